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

// triRows32 is the height of the row blocks TriInverseLower32 multiplies
// by the already inverted trailing triangle: each block's product stops at
// the triangle's diagonal.
const triRows32 = 192

// TriInverseLower32 is TriInverseLower in float32: the lower-triangular
// l[n, n] is replaced by its inverse, in place, bottom-up in blocks of
// blockSize32 with float32 products (gemm.MulTStrided); the strict upper
// triangle is not read and is zeroed. It returns a *SingularError for a
// zero or non-finite diagonal entry.
func TriInverseLower32(l []float32, n int) error {
	if n == 0 {
		return nil
	}
	_ = l[n*n-1]
	for i := 0; i < n; i++ {
		d := l[i*n+i]
		if d == 0 || math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
			return &SingularError{Index: i, Value: float64(d)}
		}
		clear(l[i*n+i+1 : i*n+n])
	}
	bs := blockSize32
	x11 := make([]float32, bs*bs)
	x11t := make([]float32, bs*bs)
	col := make([]float32, bs)
	var l21t, t []float32
	for j := (n - 1) / bs * bs; j >= 0; j -= bs {
		jb := min(bs, n-j)
		// X11 = L11⁻¹ (written over L11 once X21 is done).
		xi := x11[:jb*jb]
		triInv32(xi, l[j*n+j:], n, jb, col)
		rest := n - j - jb
		if rest > 0 {
			// With X22 = L22⁻¹ already in place: X21 = −X22·L21·X11.
			// T = X22·L21, row block by row block (X22 is lower
			// triangular: block [i0, i1) needs depth [0, i1) only).
			r0 := j + jb
			l21t = slices.Grow(l21t[:0], jb*rest)[:jb*rest] // L21ᵀ [jb, rest]
			for i := 0; i < rest; i++ {
				for c, v := range l[(r0+i)*n+j : (r0+i)*n+j+jb] {
					l21t[c*rest+i] = v
				}
			}
			t = slices.Grow(t[:0], rest*jb)[:rest*jb]
			for i0 := 0; i0 < rest; i0 += triRows32 {
				i1 := min(i0+triRows32, rest)
				gemm.MulTStrided(t[i0*jb:], jb, l[(r0+i0)*n+r0:], n, l21t, rest, i1-i0, jb, i1, false, false)
			}
			// X21 = (−T)·X11, B[c, p] = X11[p, c].
			for i := range t {
				t[i] = -t[i]
			}
			xt := x11t[:jb*jb]
			for p := 0; p < jb; p++ {
				for c, v := range xi[p*jb : p*jb+p+1] {
					xt[c*jb+p] = v
				}
			}
			for c := 0; c < jb; c++ {
				clear(xt[c*jb : c*jb+c])
			}
			gemm.MulTStrided(l[r0*n+j:], n, t, jb, xt, jb, rest, jb, jb, false, false)
		}
		for i := 0; i < jb; i++ {
			copy(l[(j+i)*n+j:(j+i)*n+j+i+1], xi[i*jb:i*jb+i+1])
		}
	}
	return nil
}

// CholeskyInverseUpper32 is CholeskyInverseUpper in float32, in place: h
// (only its upper triangle read) is overwritten with the upper-triangular U
// with H⁻¹ = Uᵀ·U, strict lower triangle zero, by one Cholesky32 and one
// TriInverseLower32 of the reversed matrix.
func CholeskyInverseUpper32(h []float32, n int) error {
	return reversed(h, n, func(h []float32, n int) error {
		if err := Cholesky32(h, n); err != nil {
			return err
		}
		return TriInverseLower32(h, n)
	})
}

// UpperCholesky32 overwrites the symmetric positive definite h[n, n]
// (float32; only its upper triangle is read) with the upper-triangular V
// with H = V·Vᵀ (strict lower triangle zeroed): the inverse of the factor
// CholeskyInverseUpper returns, so that H⁻¹ = V⁻ᵀ·V⁻¹. With J the reversal
// permutation, J·H·J = L·Lᵀ gives V = J·L·J; a *NotPositiveDefiniteError
// names the pivot as an index of h (the factorization runs from the last row
// up).
func UpperCholesky32(h []float32, n int) error { return reversed(h, n, Cholesky32) }

// UpperCholesky is UpperCholesky32 in float64 (with Cholesky).
func UpperCholesky(h []float64, n int) error { return reversed(h, n, Cholesky) }

// reversed applies f to J·H·J, J the reversal permutation — reversing both
// indices of a row-major matrix reverses its storage —, and reverses the
// result back; a *NotPositiveDefiniteError from f gets its pivot as an index
// of h. On error h is left reversed and partly overwritten.
func reversed[T float32 | float64](h []T, n int, f func([]T, int) error) error {
	h = h[:n*n]
	slices.Reverse(h)
	if err := f(h, n); err != nil {
		if e, ok := err.(*NotPositiveDefiniteError); ok {
			e.Pivot = n - 1 - e.Pivot
		}
		return err
	}
	slices.Reverse(h)
	return nil
}
