package gemm

import (
	"fmt"
)

// MulTStrided computes C[m, n] (+)= A[m, k] · B[n, k]ᵀ (C += … when
// accumulate is set) for row-major float32 matrices with explicit row
// strides lda ≥ k, ldb ≥ k and ldc ≥ n, so that each may be a block of a
// larger matrix: the products of a blocked factorization. The elements of c
// between its rows (columns n … ldc−1) are neither read nor written.
//
// With lower set (m = n required) only the lower triangle j ≤ i of C is
// promised: register tiles entirely above the diagonal are skipped and left
// as they were, while tiles that straddle it also store their entries above
// the diagonal. Lower products are split into square tiles over the
// triangle so that the workers get even shares.
//
// Accumulation is in float32, with the same kernels as MulT.
func MulTStrided(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate, lower bool) {
	if lower && m != n {
		panic(fmt.Sprintf("gemm: MulTStrided lower with m = %d ≠ n = %d", m, n))
	}
	if ldc < n || lda < k || ldb < k {
		panic(fmt.Sprintf("gemm: MulTStrided strides ldc %d, lda %d, ldb %d below n %d, k %d", ldc, lda, ldb, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	_ = c[(m-1)*ldc+n-1]
	if k == 0 {
		if !accumulate {
			clearRows(c, ldc, m, n)
		}
		return
	}
	_ = a[(m-1)*lda+k-1]
	_ = b[(n-1)*ldb+k-1]
	kern := active.Load()
	A, B := rowsF32{a, lda}, rowsF32{b, ldb}
	if !lower {
		product(kern, c, ldc, A, B, m, n, k, accumulate)
		return
	}
	lowerProduct(kern, c, ldc, A, B, n, k, accumulate)
}

// MulAtB computes C[m, n] (+)= Aᵀ·B (C += … when accumulate is set) for
// row-major float32 A [k, m] and B [k, n] with row strides lda ≥ m and
// ldb ≥ n, C with row stride ldc ≥ n: the product MulTStrided would give
// for the transposes, without forming them (the products of GPTQ's error
// propagation, whose factors are stored one row per summed index). The
// elements of c between its rows are neither read nor written.
func MulAtB(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int, accumulate bool) {
	if ldc < n || lda < m || ldb < n {
		panic(fmt.Sprintf("gemm: MulAtB strides ldc %d, lda %d, ldb %d below m %d, n %d", ldc, lda, ldb, m, n))
	}
	if m == 0 || n == 0 {
		return
	}
	_ = c[(m-1)*ldc+n-1]
	if k == 0 {
		if !accumulate {
			clearRows(c, ldc, m, n)
		}
		return
	}
	_ = a[(k-1)*lda+m-1]
	_ = b[(k-1)*ldb+n-1]
	product(active.Load(), c, ldc, colsF32{a, lda}, colsF32{b, ldb}, m, n, k, accumulate)
}

// lowerProduct is MulTStrided's lower case: square tiles (ti ≥ tj) of a side
// that is a multiple of both register dimensions, taken by the workers in
// turn.
func lowerProduct(kern *kernel, c []float32, ldc int, a, b operand, n, k int, acc bool) {
	side := roundUp(max(kern.mc, 192), kern.nr)
	for side%kern.mr != 0 {
		side += kern.nr
	}
	tn := ceilDiv(n, side)
	tiles := tn * (tn + 1) / 2
	workers := min(Threads(), tiles)
	if float64(n)*float64(n)*float64(k) < 1<<18 {
		workers = 1
	}
	run := func(ws *workspace, t int) {
		// Tile t of the triangle, row-major: row ti holds ti+1 tiles.
		ti := 0
		for (ti+1)*(ti+2)/2 <= t {
			ti++
		}
		tj := t - ti*(ti+1)/2
		i0, j0 := ti*side, tj*side
		i1, j1 := min(i0+side, n), min(j0+side, n)
		tri := triNone
		if ti == tj {
			tri = triLower
		}
		ws.tile(kern, c[i0*ldc+j0:], ldc, a, b, i0, i1, j0, j1, k, acc, tri)
	}
	runTiles(kern, side, tiles, workers, run)
}

// clearRows zeroes the first n elements of m rows of c (row stride ldc): an
// empty sum.
func clearRows(c []float32, ldc, m, n int) {
	for i := 0; i < m; i++ {
		clear(c[i*ldc : i*ldc+n])
	}
}
