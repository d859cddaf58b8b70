package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm"
)

func forEachImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer SetImpl("")
	defer gemm.SetThreads(0)
	for _, impl := range Impls() {
		for _, th := range []int{1, 3} {
			if err := SetImpl(impl); err != nil {
				t.Fatal(err)
			}
			gemm.SetThreads(th)
			t.Run(fmt.Sprintf("impl=%s/threads=%d", impl, th), f)
		}
	}
}

// sizes cross the block size (128) and the product tile (192).
var sizes = []int{1, 2, 7, 33, 129, 200, 263, 397}

// randSPD returns B·Bᵀ/n + 0.1·I for a random B: positive definite with a
// moderate condition number, like a damped Hessian.
func randSPD(r *rand.Rand, n int) []float64 {
	b := make([]float64, n*n)
	for i := range b {
		b[i] = r.NormFloat64()
	}
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += b[i*n+k] * b[j*n+k]
			}
			s /= float64(n)
			a[i*n+j], a[j*n+i] = s, s
		}
		a[i*n+i] += 0.1
	}
	return a
}

func naiveMul(a, b []float64, n int, ta, tb bool) []float64 {
	at := func(m []float64, i, j int, t bool) float64 {
		if t {
			return m[j*n+i]
		}
		return m[i*n+j]
	}
	c := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += at(a, i, k, ta) * at(b, k, j, tb)
			}
			c[i*n+j] = s
		}
	}
	return c
}

func naiveChol(a []float64, n int) []float64 {
	l := make([]float64, n*n)
	for j := 0; j < n; j++ {
		d := a[j*n+j]
		for k := 0; k < j; k++ {
			d -= l[j*n+k] * l[j*n+k]
		}
		l[j*n+j] = math.Sqrt(d)
		for i := j + 1; i < n; i++ {
			s := a[i*n+j]
			for k := 0; k < j; k++ {
				s -= l[i*n+k] * l[j*n+k]
			}
			l[i*n+j] = s / l[j*n+j]
		}
	}
	return l
}

func maxAbsDiff(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func maxAbs(a []float64) float64 { return maxAbsDiff(a, make([]float64, len(a))) }

func identity(n int) []float64 {
	e := make([]float64, n*n)
	for i := 0; i < n; i++ {
		e[i*n+i] = 1
	}
	return e
}

// Tolerances are relative to the largest entry of the compared matrices:
// float64 rounding in sums of n ≤ 400 terms of matrices with condition ≲ 10⁴
// stays several orders of magnitude below them.
const (
	tolFactor  = 1e-11
	tolInverse = 1e-9
)

func TestCholesky(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 1))
			a := randSPD(r, n)
			l := append([]float64(nil), a...)
			for i := 0; i < n; i++ { // garbage in the upper triangle is ignored
				for j := i + 1; j < n; j++ {
					l[i*n+j] = math.NaN()
				}
			}
			if err := Cholesky(l, n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if d := maxAbsDiff(l, naiveChol(a, n)); d > tolFactor*maxAbs(a) {
				t.Errorf("n=%d: L differs from the unblocked factor by %g", n, d)
			}
			if d := maxAbsDiff(naiveMul(l, l, n, false, true), a); d > tolFactor*maxAbs(a) {
				t.Errorf("n=%d: ‖L·Lᵀ − A‖ = %g", n, d)
			}
		}
	})
}

func TestInverses(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 2))
			a := randSPD(r, n)
			inv, err := InverseSPD(a, n)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if d := maxAbsDiff(naiveMul(a, inv, n, false, false), identity(n)); d > tolInverse {
				t.Errorf("n=%d: ‖A·A⁻¹ − I‖ = %g", n, d)
			}
			l := naiveChol(a, n)
			x := append([]float64(nil), l...)
			if err := TriInverseLower(x, n); err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(naiveMul(l, x, n, false, false), identity(n)); d > tolInverse {
				t.Errorf("n=%d: ‖L·L⁻¹ − I‖ = %g", n, d)
			}
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					if x[i*n+j] != 0 {
						t.Fatalf("n=%d: L⁻¹[%d,%d] = %g above the diagonal", n, i, j, x[i*n+j])
					}
				}
			}
		}
	})
}

func TestCholeskyInverseUpper(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, n := range sizes {
			r := rand.New(rand.NewPCG(uint64(n), 3))
			h := randSPD(r, n)
			h0 := append([]float64(nil), h...)
			u, err := CholeskyInverseUpper(h, n)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if maxAbsDiff(h, h0) != 0 {
				t.Fatalf("n=%d: h was modified", n)
			}
			for i := 0; i < n; i++ {
				if !(u[i*n+i] > 0) {
					t.Fatalf("n=%d: U[%d,%d] = %g", n, i, i, u[i*n+i])
				}
				for j := 0; j < i; j++ {
					if u[i*n+j] != 0 {
						t.Fatalf("n=%d: U[%d,%d] = %g below the diagonal", n, i, j, u[i*n+j])
					}
				}
			}
			// Uᵀ·U·H = I.
			utu := naiveMul(u, u, n, true, false)
			if d := maxAbsDiff(naiveMul(utu, h, n, false, false), identity(n)); d > tolInverse {
				t.Errorf("n=%d: ‖UᵀU·H − I‖ = %g", n, d)
			}
			// The torch recipe, done naively: chol(inv(H)) with inv from chol(H).
			l := naiveChol(h, n)
			li := append([]float64(nil), l...)
			if err := TriInverseLower(li, n); err != nil {
				t.Fatal(err)
			}
			hinv := naiveMul(li, li, n, true, false)
			want := naiveChol(hinv, n) // lower; U = its transpose
			scale := maxAbs(want)
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					if d := math.Abs(u[i*n+j] - want[j*n+i]); d > tolInverse*scale {
						t.Fatalf("n=%d: U[%d,%d] = %g, torch recipe gives %g", n, i, j, u[i*n+j], want[j*n+i])
					}
				}
			}
		}
	})
}

func TestNotPositiveDefinite(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, n := range []int{7, 300} {
			for _, bad := range []int{0, 5, n - 1} {
				a := identity(n)
				a[bad*n+bad] = -1
				err := Cholesky(append([]float64(nil), a...), n)
				var npd *NotPositiveDefiniteError
				if !errors.As(err, &npd) || npd.Pivot != bad || npd.Value != -1 {
					t.Errorf("n=%d bad=%d: Cholesky error %v", n, bad, err)
				}
				_, err = CholeskyInverseUpper(a, n)
				if !errors.As(err, &npd) || npd.Pivot != bad {
					t.Errorf("n=%d bad=%d: CholeskyInverseUpper error %v", n, bad, err)
				}
			}
			// Positive diagonal, indefinite: [[1, 2], [2, 1]] in the corner.
			a := identity(n)
			a[1], a[n] = 2, 2
			err := Cholesky(a, n)
			var npd *NotPositiveDefiniteError
			if !errors.As(err, &npd) || npd.Pivot != 1 || npd.Value != -3 {
				t.Errorf("n=%d: indefinite: %v", n, err)
			}
			if err != nil && err.Error() != "linalg: matrix is not positive definite: pivot 1 is -3" {
				t.Errorf("message %q", err)
			}
			a = identity(n)
			a[2*n+2] = math.NaN()
			if err := Cholesky(a, n); !errors.As(err, &npd) || npd.Pivot != 2 {
				t.Errorf("n=%d: NaN pivot: %v", n, err)
			}
		}
	})
}

func TestTriInverseSingular(t *testing.T) {
	l := identity(5)
	l[3*5+3] = 0
	var se *SingularError
	if err := TriInverseLower(l, 5); !errors.As(err, &se) || se.Index != 3 {
		t.Fatalf("TriInverseLower: %v", err)
	}
}

func TestMulAdd(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, s := range [][3]int{{1, 1, 1}, {7, 9, 5}, {6, 8, 300}, {200, 197, 261}, {13, 400, 3}, {0, 3, 3}, {3, 3, 0}} {
			m, n, k := s[0], s[1], s[2]
			r := rand.New(rand.NewPCG(uint64(m), uint64(n)))
			lda, ldb, ldc := k+1, k+3, n+2
			a := make([]float64, m*lda)
			b := make([]float64, n*ldb)
			c := make([]float64, m*ldc)
			for _, x := range [][]float64{a, b, c} {
				for i := range x {
					x[i] = r.NormFloat64()
				}
			}
			want := append([]float64(nil), c...)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var s float64
					for p := 0; p < k; p++ {
						s += a[i*lda+p] * b[j*ldb+p]
					}
					want[i*ldc+j] += -0.5 * s
				}
			}
			MulAdd(c, ldc, a, lda, b, ldb, m, n, k, -0.5)
			if d := maxAbsDiff(c, want); d > 1e-12*float64(k+1) {
				t.Errorf("%v: max error %g", s, d)
			}
		}
	})
}
