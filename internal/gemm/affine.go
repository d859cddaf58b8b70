package gemm

import "fmt"

// Affine is an MLX affine-quantized matrix (mlx.core.quantize, mode
// "affine") for a linear layer with weight [N=out, K=in]:
//
//	Weight [N, K·Bits/32]   uint32 words; code of input i of row r is bits
//	                        (i mod 32/Bits)·Bits of word [r, i/(32/Bits)]
//	                        (least significant first)
//	Scales [N, K/Group]     float32 (the stored f16/bf16/f32 values widened)
//	Biases [N, K/Group]
//
// W[r, i] = Scales[r, g]·q[r, i] + Biases[r, g], g = i/Group, evaluated in
// float32 as a rounded multiply, then an add (never fused).
type Affine struct {
	Weight         []uint32
	Scales, Biases []float32
	Bits, Group    int
	N, K           int
}

// Rows returns N (output features).
func (m Affine) Rows() int { return m.N }

// Cols returns K (input features).
func (m Affine) Cols() int { return m.K }

// Check validates the dimensions and lengths the products rely on.
func (m Affine) Check() error {
	switch m.Bits {
	case 2, 4, 8:
	default:
		return fmt.Errorf("affine matrix: bits=%d (want 2, 4 or 8)", m.Bits)
	}
	per := 32 / m.Bits
	if m.N <= 0 || m.K <= 0 || m.Group <= 0 || m.K%m.Group != 0 || m.K%per != 0 {
		return fmt.Errorf("affine matrix [%d, %d]: group_size %d and %d codes per word must divide the input width", m.N, m.K, m.Group, per)
	}
	if len(m.Weight) != m.N*m.K/per || len(m.Scales) != m.N*m.K/m.Group || len(m.Biases) != len(m.Scales) {
		return fmt.Errorf("affine matrix [%d, %d]: %d words, %d scales, %d biases do not match %d bits, group %d",
			m.N, m.K, len(m.Weight), len(m.Scales), len(m.Biases), m.Bits, m.Group)
	}
	return nil
}

// Widen dequantizes a block.
func (m Affine) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	per := 32 / m.Bits
	mask := uint32(1)<<m.Bits - 1
	wpr, gpr := m.K/per, m.K/m.Group
	for r := r0; r < r1; r++ {
		words := m.Weight[r*wpr : (r+1)*wpr]
		sc, bs := m.Scales[r*gpr:(r+1)*gpr], m.Biases[r*gpr:(r+1)*gpr]
		out := dst[(r-r0)*ld : (r-r0)*ld+c1-c0]
		for c := c0; c < c1; {
			// One group at a time: the scale and bias stay in registers.
			g := c / m.Group
			end := min(c1, (g+1)*m.Group)
			s, b := sc[g], bs[g]
			for ; c < end; c++ {
				q := words[c/per] >> (uint(c%per) * uint(m.Bits)) & mask
				out[c-c0] = float32(s*float32(q)) + b // no fused multiply-add: MLX rounds the product
			}
		}
	}
}
