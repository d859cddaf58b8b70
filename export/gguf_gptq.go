package export

import (
	"encoding/binary"
	"fmt"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
)

// gptqLayer unpacks the GPTQ tensors of one linear layer through
// formats/gptq (the one home of the layout), with the layout its config
// gives the module (bits and checkpoint_format after dynamic rules).
func gptqLayer(dir string, c *gptq.Config, lw *hf.LinearWeights, out, in int) (*gptq.Layer, error) {
	lay, err := c.LayoutFor(lw.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: quantization_config.%v", dir, err)
	}
	p, err := lay.Read(lw.Name, out, in, lw.GPTQ())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	l, err := p.Unpack()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", dir, lw.Name, err)
	}
	return l, nil
}

// repackQ4_0 writes a 4-bit GPTQ layer as Q4_0 rows (one row per output, blocks
// of 32 inputs) without changing a single value: block b of row c takes the
// f16 scale of its group as d and the GPTQ codes as nibbles, since Q4_0
// dequantizes (q − 8)·d and symmetric GPTQ scale·(q − 8). It fails when the
// layer is not symmetric (a zero point other than 8), when a block spans two
// groups, or when g_idx is not in order.
func repackQ4_0(dst []byte, l *gptq.Layer, perm func(int) int) error {
	if l.Layout.Bits != 4 {
		return fmt.Errorf("%d-bit codes do not fit Q4_0's 4-bit nibbles", l.Layout.Bits)
	}
	return repack(dst, l, perm, 8, 2+32/2, func(blk []byte, codes func(j int) uint8) {
		for j := 0; j < 16; j++ {
			blk[2+j] = codes(j) | codes(j+16)<<4
		}
	})
}

// repackQ8_0 writes an 8-bit symmetric GPTQ layer (zero point 128) as Q8_0
// rows bit for bit: d is the group's f16 scale, each int8 is the code − 128,
// since Q8_0 dequantizes q·d and GPTQ scale·(code − 128).
func repackQ8_0(dst []byte, l *gptq.Layer, perm func(int) int) error {
	if l.Layout.Bits != 8 {
		return fmt.Errorf("%d-bit codes are not Q8_0's 8-bit values", l.Layout.Bits)
	}
	return repack(dst, l, perm, 128, 2+32, func(blk []byte, codes func(j int) uint8) {
		for j := 0; j < 32; j++ {
			blk[2+j] = byte(int8(int(codes(j)) - 128))
		}
	})
}

// repack writes l as 32-element blocks of blockBytes (an f16 d, then what
// fill writes from the block's codes), checking that every block lies in one
// group, g_idx is in order and every zero point is zero.
func repack(dst []byte, l *gptq.Layer, perm func(int) int, zero uint8, blockBytes int, fill func(blk []byte, codes func(j int) uint8)) error {
	const qk = 32
	if l.In%qk != 0 {
		return fmt.Errorf("%d inputs are not whole blocks of %d", l.In, qk)
	}
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
		if z != zero {
			return fmt.Errorf("zero point %d of group %d, output %d: only symmetric GPTQ (zero %d) repacks exactly", z, i/l.Out, i%l.Out, zero)
		}
	}
	nb := l.In / qk
	rowBytes := nb * blockBytes
	if len(dst) != l.Out*rowBytes {
		return fmt.Errorf("destination of %d bytes, want %d", len(dst), l.Out*rowBytes)
	}
	for r := 0; r < l.Out; r++ {
		c := r
		if perm != nil {
			c = perm(r)
		}
		row := dst[r*rowBytes : (r+1)*rowBytes]
		for b := 0; b < nb; b++ {
			blk := row[b*blockBytes : (b+1)*blockBytes]
			g := int(l.GIdx[b*qk])
			binary.LittleEndian.PutUint16(blk, l.Scales[g*l.Out+c])
			fill(blk, func(j int) uint8 { return l.Codes[(b*qk+j)*l.Out+c] })
		}
	}
	return nil
}
