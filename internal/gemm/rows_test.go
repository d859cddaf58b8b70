package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDotRowsAxpyRows checks both attention helpers against float64 sums
// for lengths around the assembly's block widths (32 and 64), row strides
// wider than a row, and every implementation.
func TestDotRowsAxpyRows(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, impl := range Impls() {
		SetImpl(impl)
		for _, hd := range []int{1, 8, 31, 32, 63, 64, 65, 96, 128, 200} {
			for _, rows := range []int{0, 1, 2, 7, 8, 16, 130} {
				ld := hd + 5
				q := randF32(r, hd)
				// the last row ends the slice (no stride past it), as in a KV cache
				kv := randF32(r, max((rows-1)*ld+hd, 1))
				s := make([]float32, rows)
				for i := range s {
					s[i] = 1e9 // must be overwritten
				}
				DotRows(s, q, kv, ld)
				o := randF32(r, hd)
				o0 := append([]float32(nil), o...)
				AxpyRows(o, s, kv, ld)
				for j := range s {
					var want float64
					for i := range q {
						want += float64(q[i]) * float64(kv[j*ld+i])
					}
					if d := math.Abs(float64(s[j]) - want); d > 1e-4*(1+math.Abs(want)) {
						t.Fatalf("%s hd=%d rows=%d: DotRows[%d] = %v, want %v", impl, hd, rows, j, s[j], want)
					}
				}
				for i := range o {
					want := float64(o0[i])
					for j := range s {
						want += float64(s[j]) * float64(kv[j*ld+i])
					}
					if d := math.Abs(float64(o[i]) - want); d > 1e-4*(1+math.Abs(want)) {
						t.Fatalf("%s hd=%d rows=%d: AxpyRows[%d] = %v, want %v", impl, hd, rows, i, o[i], want)
					}
				}
			}
		}
	}
	SetImpl("")
}
