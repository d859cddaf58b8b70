package linalg

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchSPD builds X·Xᵀ/n + I cheaply enough for large n (the product runs
// through MulAdd).
func benchSPD(n int) []float64 {
	r := rand.New(rand.NewPCG(uint64(n), 9))
	x := make([]float64, n*n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	h := make([]float64, n*n)
	MulAdd(h, n, x, n, x, n, n, n, n, 1/float64(n))
	for i := 0; i < n; i++ {
		h[i*n+i]++
	}
	return h
}

// BenchmarkCholeskyInverseUpper reports GFLOPS counting the n³/3 multiply-adds
// (2n³/3 operations) of one Cholesky and one triangular inverse.
func BenchmarkCholeskyInverseUpper(b *testing.B) {
	for _, n := range []int{512, 2048, 5632} {
		if n > 2048 && testing.Short() {
			continue
		}
		h := benchSPD(n)
		for _, impl := range Impls() {
			if impl == "go" && n > 2048 {
				continue
			}
			b.Run(fmt.Sprintf("n=%d/impl=%s", n, impl), func(b *testing.B) {
				if err := SetImpl(impl); err != nil {
					b.Fatal(err)
				}
				defer SetImpl("")
				cpu0 := cpuTime()
				for b.Loop() {
					if _, err := CholeskyInverseUpper(h, n); err != nil {
						b.Fatal(err)
					}
				}
				nf := float64(n)
				reportFlops(b, 2*nf*nf*nf/3, cpu0)
			})
		}
	}
}

func BenchmarkCholesky(b *testing.B) {
	for _, n := range []int{2048} {
		h := benchSPD(n)
		l := make([]float64, n*n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				copy(l, h)
				if err := Cholesky(l, n); err != nil {
					b.Fatal(err)
				}
			}
			nf := float64(n)
			reportFlops(b, nf*nf*nf/3, cpu0)
		})
	}
}

func BenchmarkMulAdd(b *testing.B) {
	for _, n := range []int{1024} {
		h := benchSPD(n)
		c := make([]float64, n*n)
		for _, impl := range Impls() {
			b.Run(fmt.Sprintf("n=%d/impl=%s", n, impl), func(b *testing.B) {
				if err := SetImpl(impl); err != nil {
					b.Fatal(err)
				}
				defer SetImpl("")
				cpu0 := cpuTime()
				for b.Loop() {
					MulAdd(c, n, h, n, h, n, n, n, n, 1)
				}
				nf := float64(n)
				reportFlops(b, 2*nf*nf*nf, cpu0)
			})
		}
	}
}

// reportFlops reports GFLOPS (wall time) and GFLOPS/cpu (CPU time of the
// process: the rate per busy core, less disturbed by other load) for b.N
// operations of the given size; cpu0 is cpuTime() before the loop.
func reportFlops(b *testing.B, flops float64, cpu0 time.Duration) {
	total := flops * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds()/1e9, "GFLOPS")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(total/cpu.Seconds()/1e9, "GFLOPS/cpu")
	}
}
