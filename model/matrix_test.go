package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
)

// TestMatrixOfWidths: the products with MatrixOf's matrix (Int4 for 4 bits,
// GPTQ otherwise; v1 and v2 zeros) equal the float64 product with the
// layer's dequantized weights, for one row (matrix-vector) and many rows,
// within float32 accumulation error.
func TestMatrixOfWidths(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const out, in, groups = 96, 256, 4
	for k, bits := range append(gptq.Widths, gptq.Widths...) {
		natural := k >= len(gptq.Widths) // natural groups (the word-at-a-time paths) after act-order-like scatter
		for _, format := range []string{gptq.FormatV1, gptq.FormatV2} {
			lay := gptq.Layout{Bits: bits, Format: format}
			l := gptq.NewLayer(out, in, groups)
			l.Layout = lay
			for i := range l.Codes {
				l.Codes[i] = uint8(rng.IntN(lay.MaxQ() + 1))
			}
			lo, hi := lay.ZeroRange()
			for i := range l.Zeros {
				l.Zeros[i] = uint8(lo + rng.IntN(hi-lo+1))
				l.Scales[i] = half.F32ToF16(0.001 + rng.Float32()*0.05)
			}
			for i := range l.GIdx {
				l.GIdx[i] = int32(rng.IntN(groups)) // act-order-like scatter
				if natural {
					l.GIdx[i] = int32(i * groups / in)
				}
			}
			p, err := l.Packed()
			if err != nil {
				t.Fatal(err)
			}
			m := MatrixOf(p)
			if _, ok := m.(gemm.Int4); ok != (bits == 4) {
				t.Errorf("%v: MatrixOf gave %T", lay, m)
			}
			w := l.Dequantize()
			for _, rows := range []int{1, 7, 40} {
				a := make([]float32, rows*in)
				for i := range a {
					a[i] = rng.Float32()*2 - 1
				}
				got := make([]float32, rows*out)
				gemm.MulT(got, a, m, rows, false)
				for r := 0; r < rows; r++ {
					for c := 0; c < out; c++ {
						var want, mag float64
						for i := 0; i < in; i++ {
							v := float64(a[r*in+i]) * float64(w[c*in+i])
							want += v
							mag += math.Abs(v)
						}
						if d := math.Abs(float64(got[r*out+c]) - want); d > 1e-5*mag+1e-7 {
							t.Fatalf("%v, %d rows: C[%d, %d] = %v, want %v", lay, rows, r, c, got[r*out+c], want)
						}
					}
				}
			}
		}
	}
}
