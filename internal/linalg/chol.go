// Package linalg holds the dense factorizations GPTQ needs: Cholesky,
// triangular and SPD inverses, and the upper Cholesky factor of an inverse,
// in float64 and (the ones GPTQ uses, as the reference does on a GPU) in
// float32.
//
// Matrices are row-major n×n slices. The algorithms are blocked and
// right-looking (or bottom-up for inverses) so that almost all the work is in
// matrix products: float64 ones (MulAdd) run by an AVX2 micro-kernel on
// amd64, or a portable Go one, and float32 ones by internal/gemm's kernels
// (gemm.MulTStrided), over gemm.Threads() goroutines.
package linalg

import (
	"fmt"
	"math"
	"slices"
)

// blockSize is the width of the column blocks factored without products.
const blockSize = 128

// NotPositiveDefiniteError reports where a Cholesky factorization failed: the
// diagonal entry Pivot (0-based) became Value ≤ 0 (or NaN) after the updates of
// the previous columns, so the matrix is not (numerically) positive definite.
type NotPositiveDefiniteError struct {
	Pivot int
	Value float64
}

func (e *NotPositiveDefiniteError) Error() string {
	return fmt.Sprintf("linalg: matrix is not positive definite: pivot %d is %g", e.Pivot, e.Value)
}

// SingularError reports a zero (or non-finite) diagonal entry of a triangular
// matrix that was to be inverted.
type SingularError struct {
	Index int
	Value float64
}

func (e *SingularError) Error() string {
	return fmt.Sprintf("linalg: triangular matrix is singular: diagonal entry %d is %g", e.Index, e.Value)
}

// Cholesky factors the symmetric positive definite a[n, n] = L·Lᵀ in place:
// on success the lower triangle holds L and the strict upper triangle is
// zeroed. Only the lower triangle of a is read. When a is not positive
// definite it returns a *NotPositiveDefiniteError and a is left partly
// overwritten.
func Cholesky(a []float64, n int) error {
	if n == 0 {
		return nil
	}
	_ = a[n*n-1]
	inv := make([]float64, blockSize*blockSize)
	var panel []float64
	for j := 0; j < n; j += blockSize {
		jb := min(blockSize, n-j)
		if err := cholUnblocked(a, n, j, jb); err != nil {
			return err
		}
		rest := n - j - jb
		if rest == 0 {
			break
		}
		// A21 ← A21·L11⁻ᵀ, as a product with the explicit inverse of L11.
		linv := inv[:jb*jb]
		clear(linv)
		for i := 0; i < jb; i++ {
			copy(linv[i*jb:i*jb+i+1], a[(j+i)*n+j:(j+i)*n+j+i+1])
		}
		if err := triInvUnblocked(linv, jb, 0, jb); err != nil {
			return err // cannot happen: the diagonal is positive
		}
		panel = slices.Grow(panel[:0], rest*jb)[:rest*jb]
		for i := 0; i < rest; i++ {
			row := a[(j+jb+i)*n+j : (j+jb+i)*n+j+jb]
			copy(panel[i*jb:], row)
			clear(row)
		}
		a21 := a[(j+jb)*n+j:]
		(&product{c: a21, ldc: n, a: mat{panel, jb, false}, b: mat{linv, jb, false},
			m: rest, n: jb, alpha: 1, p1: jb}).run()
		// A22 ← A22 − A21·A21ᵀ (lower triangle).
		(&product{c: a[(j+jb)*n+j+jb:], ldc: n, a: mat{a21, n, false}, b: mat{a21, n, false},
			m: rest, n: rest, alpha: -1, p1: jb, lower: true}).run()
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : i*n+n])
	}
	return nil
}

// cholUnblocked factors the diagonal block a[j:j+jb, j:j+jb] (stride n) in
// place, all updates from columns before j having been applied.
func cholUnblocked(a []float64, n, j, jb int) error {
	for c := j; c < j+jb; c++ {
		rc := a[c*n+j : c*n+c+1]
		d := rc[c-j]
		for _, v := range rc[:c-j] {
			d -= v * v
		}
		if !(d > 0) || math.IsInf(d, 0) {
			return &NotPositiveDefiniteError{Pivot: c, Value: d}
		}
		l := math.Sqrt(d)
		rc[c-j] = l
		for r := c + 1; r < j+jb; r++ {
			rr := a[r*n+j : r*n+c+1]
			s := rr[c-j]
			for t, v := range rc[:c-j] {
				s -= rr[t] * v
			}
			rr[c-j] = s / l
		}
	}
	return nil
}

// triInvUnblocked inverts the lower-triangular block a[j:j+jb, j:j+jb]
// (stride n) in place, row by row.
func triInvUnblocked(a []float64, n, j, jb int) error {
	row := make([]float64, jb)
	for i := 0; i < jb; i++ {
		ri := a[(j+i)*n+j : (j+i)*n+j+i+1]
		d := ri[i]
		if d == 0 || math.IsNaN(d) || math.IsInf(d, 0) {
			return &SingularError{Index: j + i, Value: d}
		}
		inv := 1 / d
		// X[i, c] = −inv · Σ_{t=c}^{i−1} L[i, t]·X[t, c] for c < i.
		r := row[:i]
		clear(r)
		for t := 0; t < i; t++ {
			lt := ri[t]
			xt := a[(j+t)*n+j : (j+t)*n+j+t+1]
			for c, v := range xt {
				r[c] += lt * v
			}
		}
		for c := range r {
			ri[c] = -inv * r[c]
		}
		ri[i] = inv
	}
	return nil
}

// TriInverseLower replaces the lower-triangular l[n, n] by its inverse (also
// lower triangular), in place; the strict upper triangle is not read and is
// zeroed. It returns a *SingularError for a zero diagonal entry.
func TriInverseLower(l []float64, n int) error {
	if n == 0 {
		return nil
	}
	_ = l[n*n-1]
	// The products below read whole tiles of the inverse in place, so the
	// strict upper triangle must hold its zeros.
	for i := 0; i < n; i++ {
		clear(l[i*n+i+1 : i*n+n])
	}
	var t []float64
	for j := (n - 1) / blockSize * blockSize; j >= 0; j -= blockSize {
		jb := min(blockSize, n-j)
		if err := triInvUnblocked(l, n, j, jb); err != nil {
			return err
		}
		rest := n - j - jb
		if rest == 0 {
			continue
		}
		// With X22 = L22⁻¹ already in place: X21 = −X22·L21·X11.
		x22 := l[(j+jb)*n+j+jb:]
		l21 := l[(j+jb)*n+j:]
		t = slices.Grow(t[:0], rest*jb)[:rest*jb]
		clear(t)
		(&product{c: t, ldc: jb, a: mat{x22, n, false}, b: mat{l21, n, true},
			m: rest, n: jb, alpha: 1, p1: rest,
			depth: func(i0, i1, _, _ int) (int, int) { return 0, i1 }}).run()
		for i := 0; i < rest; i++ {
			clear(l21[i*n : i*n+jb])
		}
		(&product{c: l21, ldc: n, a: mat{t, jb, false}, b: mat{l[j*n+j:], n, true},
			m: rest, n: jb, alpha: -1, p1: jb,
			depth: func(_, _, j0, _ int) (int, int) { return j0, jb }}).run()
	}
	return nil
}

// CholeskyInverse returns A⁻¹ = L⁻ᵀ·L⁻¹ (both triangles) from the Cholesky
// factor L (lower triangle of l) of a symmetric positive definite A. l is not
// modified.
func CholeskyInverse(l []float64, n int) ([]float64, error) {
	x := make([]float64, n*n)
	for i := 0; i < n; i++ {
		copy(x[i*n:i*n+i+1], l[i*n:i*n+i+1])
	}
	if err := TriInverseLower(x, n); err != nil {
		return nil, err
	}
	inv := make([]float64, n*n)
	// inv[i, j] = Σ_t X[t, i]·X[t, j], t ≥ max(i, j): lower tiles, mirrored.
	(&product{c: inv, ldc: n, a: mat{x, n, true}, b: mat{x, n, true},
		m: n, n: n, alpha: 1, p1: n, lower: true,
		depth: func(i0, _, j0, _ int) (int, int) { return max(i0, j0), n }}).run()
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			inv[i*n+j] = inv[j*n+i]
		}
	}
	return inv, nil
}

// InverseSPD returns the inverse of the symmetric positive definite a[n, n]
// (only its lower triangle is read; a is not modified).
func InverseSPD(a []float64, n int) ([]float64, error) {
	l := slices.Clone(a[:n*n])
	if err := Cholesky(l, n); err != nil {
		return nil, err
	}
	return CholeskyInverse(l, n)
}

// CholeskyInverseUpper returns the upper-triangular U with H⁻¹ = Uᵀ·U for a
// symmetric positive definite h[n, n] — the factor GPTQ walks, equal to
// torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)),
// upper=True) — with the strict lower triangle zero. h is not modified and
// only its upper triangle is read.
//
// It never forms H⁻¹: with J the reversal permutation, J·H·J = L·Lᵀ gives
// H = V·Vᵀ with V = J·L·J upper triangular, so U = V⁻¹ = J·L⁻¹·J. That is
// one Cholesky and one triangular inverse, about n³/6 multiply-adds each. A
// *NotPositiveDefiniteError names the pivot as an index of h (the
// factorization proceeds from the last row up).
func CholeskyInverseUpper(h []float64, n int) ([]float64, error) {
	if n == 0 {
		return nil, nil
	}
	a := slices.Clone(h[:n*n])
	err := reversed(a, n, func(a []float64, n int) error {
		if err := Cholesky(a, n); err != nil {
			return err
		}
		return TriInverseLower(a, n)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}
