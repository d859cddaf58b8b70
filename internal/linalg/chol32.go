package linalg

import (
	"math"
	"slices"

	"github.com/moeforge/moeforge/internal/gemm"
)

// blockSize32 is the width of the column blocks Cholesky32 factors without
// products (with SIMD dot products instead).
const blockSize32 = 128

// Cholesky32 is Cholesky in float32 (the precision the reference GPTQ
// factors its Hessians in on a GPU): a[n, n] = L·Lᵀ in place, L in the lower
// triangle, the strict upper triangle zeroed, only the lower triangle read.
// It is blocked and right-looking like Cholesky; the panel solve and the
// trailing update are float32 products (gemm.MulTStrided, float32
// accumulation), the diagonal blocks are factored with SIMD dot products.
// When a is not (numerically, in float32) positive definite it returns a
// *NotPositiveDefiniteError and a is left partly overwritten.
func Cholesky32(a []float32, n int) error {
	if n == 0 {
		return nil
	}
	_ = a[n*n-1]
	bs := blockSize32
	linv := make([]float32, bs*bs)
	x := make([]float32, bs)
	var panel []float32
	for j := 0; j < n; j += bs {
		jb := min(bs, n-j)
		if err := cholUnblocked32(a, n, j, jb); err != nil {
			return err
		}
		rest := n - j - jb
		if rest == 0 {
			break
		}
		// A21 ← A21·L11⁻ᵀ, as a product with the explicit inverse of L11.
		li := linv[:jb*jb]
		triInv32(li, a[j*n+j:], n, jb, x)
		panel = slices.Grow(panel[:0], rest*jb)[:rest*jb]
		for i := 0; i < rest; i++ {
			copy(panel[i*jb:(i+1)*jb], a[(j+jb+i)*n+j:(j+jb+i)*n+j+jb])
		}
		a21 := a[(j+jb)*n+j:]
		gemm.MulTStrided(a21, n, panel, jb, li, jb, rest, jb, jb, false, false)
		// A22 ← A22 − A21·A21ᵀ (lower triangle), as A22 + (−A21)·A21ᵀ.
		for i := 0; i < rest; i++ {
			p := panel[i*jb : (i+1)*jb]
			for t, v := range a21[i*n : i*n+jb] {
				p[t] = -v
			}
		}
		gemm.MulTStrided(a[(j+jb)*n+j+jb:], n, panel, jb, a21, n, rest, rest, jb, true, true)
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : i*n+n])
	}
	return nil
}

// cholUnblocked32 factors the diagonal block a[j:j+jb, j:j+jb] (stride n)
// in place, all updates from columns before j having been applied: column
// by column, each entry one dot product of two rows of L.
func cholUnblocked32(a []float32, n, j, jb int) error {
	for c := j; c < j+jb; c++ {
		rc := a[c*n+j : c*n+c]
		d := a[c*n+c] - gemm.Dot(rc, rc)
		if !(d > 0) || math.IsInf(float64(d), 0) {
			return &NotPositiveDefiniteError{Pivot: c, Value: float64(d)}
		}
		l := float32(math.Sqrt(float64(d)))
		a[c*n+c] = l
		for r := c + 1; r < j+jb; r++ {
			rr := a[r*n+j : r*n+c]
			a[r*n+c] = (a[r*n+c] - gemm.Dot(rr, rc)) / l
		}
	}
	return nil
}

// triInv32 writes the inverse of the lower-triangular l[jb, jb] (stride n,
// positive diagonal) into x[jb, jb] (stride jb, upper triangle zero), one
// column at a time by forward substitution; col is scratch of jb values.
func triInv32(x, l []float32, n, jb int, col []float32) {
	clear(x[:jb*jb])
	for c := 0; c < jb; c++ {
		// Solve L·y = e_c: y[i] = 0 for i < c.
		y := col[:jb]
		y[c] = 1 / l[c*n+c]
		x[c*jb+c] = y[c]
		for i := c + 1; i < jb; i++ {
			y[i] = -gemm.Dot(l[i*n+c:i*n+i], y[c:i]) / l[i*n+i]
			x[i*jb+c] = y[i]
		}
	}
}

// UpperCholesky32 overwrites the symmetric positive definite h[n, n]
// (float32; only its upper triangle is read) with the upper-triangular V
// with H = V·Vᵀ (strict lower triangle zeroed): the inverse of the factor
// CholeskyInverseUpper returns, so that H⁻¹ = V⁻ᵀ·V⁻¹. With J the reversal
// permutation, J·H·J = L·Lᵀ gives V = J·L·J; a *NotPositiveDefiniteError
// names the pivot as an index of h (the factorization runs from the last row
// up).
func UpperCholesky32(h []float32, n int) error {
	// Reversing both indices of a row-major matrix reverses its storage.
	h = h[:n*n]
	slices.Reverse(h)
	if err := Cholesky32(h, n); err != nil {
		if e, ok := err.(*NotPositiveDefiniteError); ok {
			e.Pivot = n - 1 - e.Pivot
		}
		return err
	}
	slices.Reverse(h)
	return nil
}

// UpperCholesky is UpperCholesky32 in float64 (with Cholesky).
func UpperCholesky(h []float64, n int) error {
	h = h[:n*n]
	slices.Reverse(h)
	if err := Cholesky(h, n); err != nil {
		if e, ok := err.(*NotPositiveDefiniteError); ok {
			e.Pivot = n - 1 - e.Pivot
		}
		return err
	}
	slices.Reverse(h)
	return nil
}
