package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
)

// Guard-band tests (see internal/gemm/kerneltest): the float64 kernels' stores
// stay inside their tile and the slack their contract allows.

func randVec(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.Float64()*2 - 1
	}
	return v
}

func TestGuardMicro(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range kernels {
		for _, kc := range []int{1, 3, 4, 5, 37} {
			for _, gap := range []int{0, 3} {
				ldc := k.nr + gap
				a, b := randVec(r, kc*k.mr), randVec(r, kc*k.nr)
				c := kerneltest.New[float64]((k.mr-1)*ldc+k.nr, 0)
				for e := range c.S {
					if e%ldc < k.nr {
						c.S[e] = 1
					}
				}
				const alpha = -0.5
				k.micro(kc, &a[0], &b[0], &c.S[0], ldc, alpha)
				name := fmt.Sprintf("%s kc=%d ldc=%d", k.name, kc, ldc)
				if err := c.Check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for e, v := range c.S {
					i, j := e/ldc, e%ldc
					if j >= k.nr {
						if v != kerneltest.Sentinel {
							t.Fatalf("%s: wrote %v between rows at [%d,%d]", name, v, i, j)
						}
						continue
					}
					var s float64
					for p := 0; p < kc; p++ {
						s += a[p*k.mr+i] * b[p*k.nr+j]
					}
					if want := 1 + alpha*s; math.Abs(v-want) > 1e-12*(1+math.Abs(want)) {
						t.Fatalf("%s: C[%d,%d] = %v, want %v", name, i, j, v, want)
					}
				}
			}
		}
	}
}

func TestGuardPackRows(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, k := range kernels {
		for _, w := range []int{1, 3, 4, 5, k.mr, k.nr, 9} {
			for _, kc := range []int{1, 3, 4, 7, 16, 37} {
				ld := kc + 2
				src := randVec(r, w*ld)
				d := kerneltest.New[float64](w*kc, 4) // grow gives packing buffers that slack
				k.packRows(d.S, src, ld, w, kc)
				name := fmt.Sprintf("%s w=%d kc=%d", k.name, w, kc)
				if err := d.Check(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for p := 0; p < kc; p++ {
					for i := 0; i < w; i++ {
						if got, want := d.S[p*w+i], src[i*ld+p]; got != want {
							t.Fatalf("%s: panel[%d·w+%d] = %v, want %v", name, p, i, got, want)
						}
					}
				}
			}
		}
	}
}
