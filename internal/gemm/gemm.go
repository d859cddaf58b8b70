package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

var threads atomic.Int32

// SetThreads caps the number of goroutines a product uses (0 = GOMAXPROCS).
func SetThreads(n int) { threads.Store(int32(n)) }

// Threads returns the number of goroutines a product may use.
func Threads() int {
	if n := int(threads.Load()); n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}

// panelRows is how many rows of B are widened at once.
const panelRows = 64

// MulT computes C[m, n] = A[m, k] · Bᵀ, or C += A·Bᵀ when accumulate is set.
// A is row-major with stride k, C row-major with stride n = b.Rows().
func MulT(c, a []float32, b Matrix, m int, accumulate bool) {
	n, k := b.Rows(), b.Cols()
	if m == 0 || n == 0 {
		return
	}
	_ = a[m*k-1]
	_ = c[m*n-1]
	if k == 0 {
		if !accumulate {
			clear(c[:m*n])
		}
		return
	}
	panels := (n + panelRows - 1) / panelRows
	workers := min(Threads(), panels)
	var next atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, panelRows*k)
			for {
				p := int(next.Add(1)) - 1
				if p >= panels {
					return
				}
				r0 := p * panelRows
				r1 := min(r0+panelRows, n)
				if f, ok := b.(F32); ok {
					buf = f.Data[r0*k : r1*k]
				} else {
					b.Widen(buf, k, r0, r1, 0, k)
				}
				mulPanel(c, a, buf, m, n, k, r0, r1, accumulate)
			}
		}()
	}
	wg.Wait()
}

// mulPanel computes columns [r0, r1) of C from a widened panel of B.
func mulPanel(c, a, panel []float32, m, n, k, r0, r1 int, accumulate bool) {
	for i := 0; i < m; i++ {
		ai := a[i*k : i*k+k]
		ci := c[i*n : i*n+n]
		for j := r0; j < r1; j++ {
			bj := panel[(j-r0)*k : (j-r0)*k+k]
			s := dot(ai, bj)
			if accumulate {
				ci[j] += s
			} else {
				ci[j] = s
			}
		}
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// MulTF32 is MulT for plain float32 slices: C[m, n] (+)= A[m, k] · B[n, k]ᵀ.
func MulTF32(c, a, b []float32, m, n, k int, accumulate bool) {
	MulT(c, a, F32{Data: b, N: n, K: k}, m, accumulate)
}

// SyrkAdd accumulates H[k, k] += Xᵀ·X for X [n, k] (row-major), in float64.
// Both triangles of H are written.
func SyrkAdd(h []float64, x []float32, n, k int) {
	if n == 0 {
		return
	}
	// Transpose X so that each Hessian entry is a dot product of two columns.
	xt := make([]float32, k*n)
	for r := 0; r < n; r++ {
		for c := 0; c < k; c++ {
			xt[c*n+r] = x[r*k+c]
		}
	}
	block := make([]float32, k*k)
	MulTF32(block, xt, xt, k, k, n, false)
	for i := range h[:k*k] {
		h[i] += float64(block[i])
	}
}
