package linalg

import (
	"fmt"
	"math/rand/v2"
	"testing"
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
				for b.Loop() {
					if _, err := CholeskyInverseUpper(h, n); err != nil {
						b.Fatal(err)
					}
				}
				nf := float64(n)
				b.ReportMetric(2*nf*nf*nf/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

func BenchmarkCholesky(b *testing.B) {
	for _, n := range []int{2048} {
		h := benchSPD(n)
		l := make([]float64, n*n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for b.Loop() {
				copy(l, h)
				if err := Cholesky(l, n); err != nil {
					b.Fatal(err)
				}
			}
			nf := float64(n)
			b.ReportMetric(nf*nf*nf/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
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
				for b.Loop() {
					MulAdd(c, n, h, n, h, n, n, n, n, 1)
				}
				nf := float64(n)
				b.ReportMetric(2*nf*nf*nf*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}
