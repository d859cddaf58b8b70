package gguf

import (
	"encoding/binary"

	"github.com/moeforge/moeforge/internal/half"
)

// BlockMatrix is a row-major matrix [N, K] of Q8_0 or Q4_0 blocks (each row
// K/32 blocks), as GGUF stores a weight [out, in]. It satisfies the forward
// pass's gemm.Matrix: Widen dequantizes the blocks a panel needs, so the
// matrix is never expanded as a whole.
type BlockMatrix struct {
	Type Type // Q8_0 or Q4_0
	Data []byte
	N, K int
}

// Rows returns N.
func (m BlockMatrix) Rows() int { return m.N }

// Cols returns K.
func (m BlockMatrix) Cols() int { return m.K }

// Widen writes rows [r0, r1) × columns [c0, c1) as float32 into dst (row
// stride ld), with ggml's dequantization.
func (m BlockMatrix) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	bb := m.Type.BlockBytes()
	rowBytes := m.K / QK * bb
	var tmp [QK]float32
	for r := r0; r < r1; r++ {
		row := m.Data[r*rowBytes : (r+1)*rowBytes]
		out := dst[(r-r0)*ld : (r-r0)*ld+c1-c0]
		for b := c0 / QK; b*QK < c1; b++ {
			blk := row[b*bb : (b+1)*bb]
			lo, hi := max(c0, b*QK), min(c1, (b+1)*QK)
			if lo == b*QK && hi == (b+1)*QK {
				m.block(out[lo-c0:hi-c0], blk)
				continue
			}
			m.block(tmp[:], blk)
			copy(out[lo-c0:hi-c0], tmp[lo-b*QK:hi-b*QK])
		}
	}
}

func (m BlockMatrix) block(dst []float32, blk []byte) {
	d := half.F16ToF32(binary.LittleEndian.Uint16(blk))
	if m.Type == Q8_0 {
		for j := range QK {
			dst[j] = float32(int8(blk[2+j])) * d
		}
		return
	}
	for j := 0; j < QK/2; j++ {
		dst[j] = float32(int32(blk[2+j]&15)-8) * d
		dst[j+QK/2] = float32(int32(blk[2+j]>>4)-8) * d
	}
}
