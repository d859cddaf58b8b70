package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
)

// forEachGemm runs f with every float32 kernel of internal/gemm (the float32
// factorizations' products) and with 1 and 3 goroutines.
func forEachGemm(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer gemm.SetImpl("")
	defer gemm.SetThreads(0)
	for _, impl := range gemm.Impls() {
		for _, th := range []int{1, 3} {
			if err := gemm.SetImpl(impl); err != nil {
				t.Fatal(err)
			}
			gemm.SetThreads(th)
			t.Run(fmt.Sprintf("gemm=%s/threads=%d", impl, th), f)
		}
	}
}

func to32(a []float64) []float32 {
	s := make([]float32, len(a))
	for i, v := range a {
		s[i] = float32(v)
	}
	return s
}

func to64(a []float32) []float64 {
	s := make([]float64, len(a))
	for i, v := range a {
		s[i] = float64(v)
	}
	return s
}

// tolFactor32 bounds the float32 factors' error relative to the largest
// entry of A: float32 rounding (6e-8) over sums of n ≤ 400 terms of
// matrices of condition ≲ 50 (randSPD) gives at most 5e-7 here.
const tolFactor32 = 3e-6

// TestCholesky32 compares the float32 factor with the float64 unblocked one
// and checks L·Lᵀ = A, on sizes that cross the block size and the product
// tiles, inside guard bands (nothing is written outside a[:n·n]) and with
// garbage in the unread upper triangle.
func TestCholesky32(t *testing.T) {
	forEachGemm(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 11))
			a := randSPD(r, n)
			g := kerneltest.New[float32](n*n, 0)
			copy(g.S, to32(a))
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					g.S[i*n+j] = float32(math.NaN())
				}
			}
			if err := Cholesky32(g.S, n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if err := g.Check(); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			l := to64(g.S)
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					if l[i*n+j] != 0 {
						t.Fatalf("n=%d: L[%d,%d] = %g above the diagonal", n, i, j, l[i*n+j])
					}
				}
			}
			if d := maxAbsDiff(l, naiveChol(a, n)); d > tolFactor32*maxAbs(a) {
				t.Errorf("n=%d: L differs from the float64 factor by %g", n, d)
			}
			if d := maxAbsDiff(naiveMul(l, l, n, false, true), a); d > tolFactor32*maxAbs(a) {
				t.Errorf("n=%d: ‖L·Lᵀ − A‖ = %g", n, d)
			}
		}
	})
}

// TestUpperCholesky checks that both precisions give the upper V with
// V·Vᵀ = H whose inverse is CholeskyInverseUpper's U (U·V = I), reading
// only the upper triangle of h.
func TestUpperCholesky(t *testing.T) {
	forEachGemm(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 12))
			h := randSPD(r, n)
			u, err := CholeskyInverseUpper(h, n)
			if err != nil {
				t.Fatal(err)
			}
			garbage := func(m []float64) []float64 {
				m = append([]float64(nil), m...)
				for i := 0; i < n; i++ {
					for j := 0; j < i; j++ {
						m[i*n+j] = math.NaN()
					}
				}
				return m
			}
			v64 := garbage(h)
			if err := UpperCholesky(v64, n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			v32 := to32(garbage(h))
			if err := UpperCholesky32(v32, n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			for _, tc := range []struct {
				name string
				v    []float64
				tol  float64
			}{{"float64", v64, tolInverse}, {"float32", to64(v32), tolFactor32}} {
				for i := 0; i < n; i++ {
					for j := 0; j < i; j++ {
						if tc.v[i*n+j] != 0 {
							t.Fatalf("n=%d %s: V[%d,%d] = %g below the diagonal", n, tc.name, i, j, tc.v[i*n+j])
						}
					}
				}
				if d := maxAbsDiff(naiveMul(tc.v, tc.v, n, false, true), h); d > tc.tol*maxAbs(h) {
					t.Errorf("n=%d %s: ‖V·Vᵀ − H‖ = %g", n, tc.name, d)
				}
				if d := maxAbsDiff(naiveMul(u, tc.v, n, false, false), identity(n)); d > tc.tol {
					t.Errorf("n=%d %s: ‖U·V − I‖ = %g", n, tc.name, d)
				}
			}
		}
	})
}

func TestNotPositiveDefinite32(t *testing.T) {
	forEachGemm(t, func(t *testing.T) {
		for _, n := range []int{7, 300} {
			for _, bad := range []int{0, 5, n - 1} {
				a := to32(identity(n))
				a[bad*n+bad] = -1
				err := Cholesky32(append([]float32(nil), a...), n)
				var npd *NotPositiveDefiniteError
				if !errors.As(err, &npd) || npd.Pivot != bad || npd.Value != -1 {
					t.Errorf("n=%d bad=%d: Cholesky32 error %v", n, bad, err)
				}
				if err := UpperCholesky32(a, n); !errors.As(err, &npd) || npd.Pivot != bad {
					t.Errorf("n=%d bad=%d: UpperCholesky32 error %v", n, bad, err)
				}
				a64 := identity(n)
				a64[bad*n+bad] = -1
				if err := UpperCholesky(a64, n); !errors.As(err, &npd) || npd.Pivot != bad {
					t.Errorf("n=%d bad=%d: UpperCholesky error %v", n, bad, err)
				}
			}
			// Positive diagonal, indefinite past the first block.
			a := to32(identity(n))
			if n > 200 {
				a[200*n+150], a[150*n+200] = 2, 2
				err := Cholesky32(a, n)
				var npd *NotPositiveDefiniteError
				if !errors.As(err, &npd) || npd.Pivot != 200 || npd.Value != -3 {
					t.Errorf("n=%d: indefinite: %v", n, err)
				}
			}
			a = to32(identity(n))
			a[2*n+2] = float32(math.NaN())
			var npd *NotPositiveDefiniteError
			if err := Cholesky32(a, n); !errors.As(err, &npd) || npd.Pivot != 2 {
				t.Errorf("n=%d: NaN pivot: %v", n, err)
			}
		}
	})
}

// TestCholeskyInverseUpper32 compares the float32 U (H⁻¹ = Uᵀ·U) with the
// float64 one, and checks L·L⁻¹ = I for TriInverseLower32 inside guard
// bands with garbage in the unread upper triangle.
func TestCholeskyInverseUpper32(t *testing.T) {
	forEachGemm(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 13))
			h := randSPD(r, n)
			u, err := CholeskyInverseUpper(h, n)
			if err != nil {
				t.Fatal(err)
			}
			u32 := to32(h)
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					u32[i*n+j] = float32(math.NaN())
				}
			}
			if err := CholeskyInverseUpper32(u32, n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			got := to64(u32)
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					if got[i*n+j] != 0 {
						t.Fatalf("n=%d: U[%d,%d] = %g below the diagonal", n, i, j, got[i*n+j])
					}
				}
			}
			if d := maxAbsDiff(got, u); d > tolFactor32*maxAbs(u) {
				t.Errorf("n=%d: U differs from the float64 one by %g (max |U| %g)", n, d, maxAbs(u))
			}

			l := naiveChol(h, n)
			g := kerneltest.New[float32](n*n, 0)
			copy(g.S, to32(l))
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					g.S[i*n+j] = float32(math.NaN())
				}
			}
			if err := TriInverseLower32(g.S, n); err != nil {
				t.Fatal(err)
			}
			if err := g.Check(); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if d := maxAbsDiff(naiveMul(l, to64(g.S), n, false, false), identity(n)); d > tolFactor32 {
				t.Errorf("n=%d: ‖L·L⁻¹ − I‖ = %g", n, d)
			}
		}
	})
	l := to32(identity(5))
	l[3*5+3] = 0
	var se *SingularError
	if err := TriInverseLower32(l, 5); !errors.As(err, &se) || se.Index != 3 {
		t.Fatalf("TriInverseLower32: %v", err)
	}
}
