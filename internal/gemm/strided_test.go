package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
)

// TestMulTStrided checks MulTStrided on blocks of larger matrices (every
// stride above the row length) inside guard bands, with every kernel and 1
// and 3 goroutines: the block of C gets A·Bᵀ (plus its old value when
// accumulating) within tol of a float64 sum; the gaps between C's rows and
// the bands around it keep their sentinels; with lower, entries above the
// diagonal either keep their old value or hold exactly what the full product
// gives them.
func TestMulTStrided(t *testing.T) {
	shapes := [][3]int{
		{1, 1, 1}, {5, 5, 3}, {6, 16, 1}, {13, 29, 37}, {64, 64, 64}, {100, 100, 130},
		{150, 70, 257}, {200, 200, 128}, {385, 385, 64}, {7, 300, 5}, {0, 4, 4}, {3, 3, 0},
	}
	forEachImpl(t, func(t *testing.T) {
		for si, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			for _, lower := range []bool{false, true} {
				if lower && m != n {
					continue
				}
				for _, acc := range []bool{false, true} {
					name := fmt.Sprintf("%dx%dx%d lower=%v acc=%v", m, n, k, lower, acc)
					checkStrided(t, name, rand.New(rand.NewPCG(uint64(si), 5)), m, n, k, acc, lower)
				}
			}
		}
	})
}

func checkStrided(t *testing.T, name string, r *rand.Rand, m, n, k int, acc, lower bool) {
	t.Helper()
	lda, ldb, ldc := k+3, k+1, n+5
	a := randF32(r, max(0, (m-1)*lda+k))
	b := randF32(r, max(0, (n-1)*ldb+k))
	size := max(0, (m-1)*ldc+n)
	c := kerneltest.New[float32](size, 0)
	old := randF32(r, size)
	for i := 0; i < m; i++ {
		copy(c.S[i*ldc:i*ldc+n], old[i*ldc:i*ldc+n])
	}
	MulTStrided(c.S, ldc, a, lda, b, ldb, m, n, k, acc, lower)
	checkBlock(t, name, c, old, ldc, n, k, acc, lower, func(i, j, p int) float64 {
		return float64(a[i*lda+p]) * float64(b[j*ldb+p])
	})
}

// checkBlock checks the block C[m, n] (row stride ldc) a strided product
// wrote into the guarded c: its guard bands and the gaps between its rows
// untouched, every entry within tol of the float64 sum over p < k of
// term(i, j, p) (plus old when accumulating), entries above the diagonal
// left as they were allowed with lower.
func checkBlock(t *testing.T, name string, c *kerneltest.Buffer[float32], old []float32, ldc, n, k int, acc, lower bool, term func(i, j, p int) float64) {
	t.Helper()
	if err := c.Check(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for e, v := range c.S {
		i, j := e/ldc, e%ldc
		if j >= n {
			if v != kerneltest.Sentinel {
				t.Fatalf("%s: wrote %v between rows at [%d, %d]", name, v, i, j)
			}
			continue
		}
		var s, mag float64
		for p := 0; p < k; p++ {
			x := term(i, j, p)
			s += x
			mag += math.Abs(x)
		}
		if acc {
			s += float64(old[e])
			mag += math.Abs(float64(old[e]))
		}
		if lower && j > i && v == old[e] {
			continue // skipped above the diagonal
		}
		if math.Abs(float64(v)-s) > tol*(mag+1e-30) {
			t.Fatalf("%s: C[%d, %d] = %v, want %v", name, i, j, v, s)
		}
	}
}

// TestMulAtB checks MulAtB like TestMulTStrided: blocks of larger
// matrices, guard bands and the gaps between C's rows, every kernel.
func TestMulAtB(t *testing.T) {
	shapes := [][3]int{{1, 1, 1}, {5, 7, 3}, {6, 16, 1}, {13, 29, 37}, {64, 64, 64}, {112, 1408, 16}, {150, 70, 257}, {7, 300, 5}, {0, 4, 4}, {3, 3, 0}}
	forEachImpl(t, func(t *testing.T) {
		for si, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			for _, acc := range []bool{false, true} {
				r := rand.New(rand.NewPCG(uint64(si), 6))
				lda, ldb, ldc := m+2, n+3, n+5
				a := randF32(r, max(0, (k-1)*lda+m))
				b := randF32(r, max(0, (k-1)*ldb+n))
				size := max(0, (m-1)*ldc+n)
				c := kerneltest.New[float32](size, 0)
				old := randF32(r, size)
				for i := 0; i < m; i++ {
					copy(c.S[i*ldc:i*ldc+n], old[i*ldc:i*ldc+n])
				}
				MulAtB(c.S, ldc, a, lda, b, ldb, m, n, k, acc)
				checkBlock(t, fmt.Sprintf("%dx%dx%d acc=%v", m, n, k, acc), c, old, ldc, n, k, acc, false, func(i, j, p int) float64 {
					return float64(a[p*lda+i]) * float64(b[p*ldb+j])
				})
			}
		}
	})
}

// BenchmarkMulAtB times GPTQ's error propagation for a [1408, 2048] expert
// matrix: the errors of a block of 128 columns (rows of B, 1408 wide) into
// the remaining columns (rows of A's transpose), and of an inner block of
// 16 into the rest of its block.
func BenchmarkMulAtB(b *testing.B) {
	const out, in = 1408, 2048
	r := rand.New(rand.NewPCG(4, 4))
	u := randF32(r, in*in)
	e := randF32(r, 128*out)
	wt := randF32(r, in*out)
	for _, s := range [][2]int{{in - 128, 128}, {in / 2, 128}, {112, 16}} {
		m, k := s[0], s[1]
		b.Run(fmt.Sprintf("m=%d/k=%d", m, k), func(b *testing.B) {
			kerneltest.Impls(b, impls(), SetImpl, 2*float64(m)*out*float64(k), func(*testing.B) {
				MulAtB(wt, out, u[in-m:], in, e, out, m, out, k, true)
			})
		})
	}
}

// BenchmarkMulTStrided times the products of a blocked float32 Cholesky of
// n = 2048 with panels of 128: the panel solve (a [1920, 128] block times a
// 128×128 triangle's inverse) and the lower-triangle update of the trailing
// [1920, 1920] block, both on blocks of an n×n matrix. GFLOPS count the
// lower product's work as n²·k (its triangle).
func BenchmarkMulTStrided(b *testing.B) {
	const n, jb = 2048, 128
	r := rand.New(rand.NewPCG(3, 3))
	big := randF32(r, n*n)
	panel := randF32(r, (n-jb)*jb)
	for _, rest := range []int{n - jb, 1024, 512} {
		b.Run(fmt.Sprintf("panel/m=%d", rest), func(b *testing.B) {
			kerneltest.Impls(b, impls(), SetImpl, 2*float64(rest)*jb*jb, func(*testing.B) {
				MulTStrided(big[jb*n:], n, panel, jb, big, n, rest, jb, jb, false, false)
			})
		})
		b.Run(fmt.Sprintf("lower/n=%d", rest), func(b *testing.B) {
			kerneltest.Impls(b, impls(), SetImpl, float64(rest)*float64(rest)*jb, func(*testing.B) {
				MulTStrided(big[jb*n+jb:], n, panel, jb, panel, jb, rest, rest, jb, true, true)
			})
		})
	}
}
