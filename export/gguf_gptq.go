package export

import (
	"encoding/binary"
	"fmt"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
)

// gptqLayer unpacks the GPTQ tensors of one linear layer through
// formats/gptq (the one home of the layout).
func gptqLayer(dir string, c *gptq.Config, lw *hf.LinearWeights, out, in int) (*gptq.Layer, error) {
	lay, err := gptq.LayoutOf(c.Bits, c.CheckpointFormat)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", dir, err)
	}
	p, err := lay.Read(lw.Name, out, in, gptq.Tensors{QWeight: lw.QWeight, QZeros: lw.QZeros, Scales: lw.Scales, GIdx: lw.GIdx})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	l, err := p.Unpack()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", dir, lw.Name, err)
	}
	return l, nil
}

// repackQ4_0 writes a GPTQ layer as Q4_0 rows (one row per output, blocks
// of 32 inputs) without changing a single value: block b of row c takes the
// f16 scale of its group as d and the GPTQ codes as nibbles, since Q4_0
// dequantizes (q − 8)·d and symmetric GPTQ scale·(q − 8). It fails when the
// layer is not symmetric (a zero point other than 8), when a block spans two
// groups, or when g_idx is not in order.
func repackQ4_0(dst []byte, l *gptq.Layer, perm func(int) int) error {
	const qk = 32
	if l.In%qk != 0 {
		return fmt.Errorf("%d inputs are not whole Q4_0 blocks of %d", l.In, qk)
	}
	// Every block must lie in one group, in order.
	for b := 0; b < l.In/qk; b++ {
		g := l.GIdx[b*qk]
		for j := 1; j < qk; j++ {
			if l.GIdx[b*qk+j] != g {
				return fmt.Errorf("g_idx[%d]=%d but g_idx[%d]=%d: a 32-block spans two groups (act-order or a group size not a multiple of 32)", b*qk, g, b*qk+j, l.GIdx[b*qk+j])
			}
		}
		if b > 0 && g < l.GIdx[(b-1)*qk] {
			return fmt.Errorf("g_idx is not in order at input %d", b*qk)
		}
	}
	for i, z := range l.Zeros {
		if z != 8 {
			return fmt.Errorf("zero point %d of group %d, output %d: only symmetric GPTQ (zero 8) is Q4_0", z, i/l.Out, i%l.Out)
		}
	}
	nb := l.In / qk
	rowBytes := nb * (2 + qk/2)
	if len(dst) != l.Out*rowBytes {
		return fmt.Errorf("Q4_0 destination of %d bytes, want %d", len(dst), l.Out*rowBytes)
	}
	for r := 0; r < l.Out; r++ {
		c := r
		if perm != nil {
			c = perm(r)
		}
		row := dst[r*rowBytes : (r+1)*rowBytes]
		for b := 0; b < nb; b++ {
			blk := row[b*(2+qk/2) : (b+1)*(2+qk/2)]
			g := int(l.GIdx[b*qk])
			binary.LittleEndian.PutUint16(blk, l.Scales[g*l.Out+c])
			for j := 0; j < qk/2; j++ {
				lo := l.Codes[(b*qk+j)*l.Out+c]
				hi := l.Codes[(b*qk+j+qk/2)*l.Out+c]
				blk[2+j] = lo | hi<<4
			}
		}
	}
	return nil
}
