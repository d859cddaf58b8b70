package linalg

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
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

// impls are the implementations to time: all of them, or only the SIMD ones
// for sizes where Go would take too long.
func impls(all bool) []kerneltest.Impl {
	var ims []kerneltest.Impl
	for _, name := range Impls() {
		if all || name != "go" {
			ims = append(ims, kerneltest.Impl{Sub: name, Name: name})
		}
	}
	return ims
}

// BenchmarkCholeskyInverseUpper reports GFLOPS counting the n³/3 multiply-adds
// (2n³/3 operations) of one Cholesky and one triangular inverse.
func BenchmarkCholeskyInverseUpper(b *testing.B) {
	for _, n := range []int{512, 2048, 5632} {
		if n > 2048 && testing.Short() {
			continue
		}
		h := benchSPD(n)
		nf := float64(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			kerneltest.Impls(b, impls(n <= 2048), SetImpl, 2*nf*nf*nf/3, func(b *testing.B) {
				if _, err := CholeskyInverseUpper(h, n); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkCholesky(b *testing.B) {
	for _, n := range []int{2048} {
		h := benchSPD(n)
		l := make([]float64, n*n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			cpu0 := kerneltest.CPUTime()
			for b.Loop() {
				copy(l, h)
				if err := Cholesky(l, n); err != nil {
					b.Fatal(err)
				}
			}
			nf := float64(n)
			kerneltest.ReportFlops(b, nf*nf*nf/3, cpu0)
		})
	}
}

func BenchmarkMulAdd(b *testing.B) {
	for _, n := range []int{1024} {
		h := benchSPD(n)
		c := make([]float64, n*n)
		nf := float64(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			kerneltest.Impls(b, impls(true), SetImpl, 2*nf*nf*nf, func(*testing.B) { MulAdd(c, n, h, n, h, n, n, n, n, 1) })
		})
	}
}

// gemmImpls are the float32 kernels of internal/gemm to time the float32
// factorizations with: the best SIMD one, and Go for small sizes.
func gemmImpls(all bool) []kerneltest.Impl {
	var ims []kerneltest.Impl
	for _, name := range gemm.Impls() {
		if all || name != "go" {
			ims = append(ims, kerneltest.Impl{Sub: name, Name: name})
		}
	}
	return ims
}

// BenchmarkUpperCholesky reports GFLOPS counting the n³/6 multiply-adds
// (n³/3 operations) of one Cholesky, for the factor GPTQ uses (V with
// H = V·Vᵀ) in float32 (prec=32, products in internal/gemm) and float64
// (prec=64, this package's products).
func BenchmarkUpperCholesky(b *testing.B) {
	for _, n := range []int{512, 1408, 2048, 5632} {
		if n > 2048 && testing.Short() {
			continue
		}
		h := benchSPD(n)
		h32 := make([]float32, len(h))
		for i, v := range h {
			h32[i] = float32(v)
		}
		nf := float64(n)
		flops := nf * nf * nf / 3
		v := make([]float64, len(h))
		v32 := make([]float32, len(h))
		b.Run(fmt.Sprintf("prec=64/n=%d", n), func(b *testing.B) {
			kerneltest.Impls(b, impls(n <= 512), SetImpl, flops, func(b *testing.B) {
				copy(v, h)
				if err := UpperCholesky(v, n); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(fmt.Sprintf("prec=32/n=%d", n), func(b *testing.B) {
			kerneltest.Impls(b, gemmImpls(n <= 512), gemm.SetImpl, flops, func(b *testing.B) {
				copy(v32, h32)
				if err := UpperCholesky32(v32, n); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkCholeskyInverseUpper32 is BenchmarkCholeskyInverseUpper for the
// float32 factor (products in internal/gemm), GFLOPS counting 2n³/3.
func BenchmarkCholeskyInverseUpper32(b *testing.B) {
	for _, n := range []int{512, 1408, 2048, 5632} {
		if n > 2048 && testing.Short() {
			continue
		}
		h := benchSPD(n)
		h32 := make([]float32, len(h))
		for i, v := range h {
			h32[i] = float32(v)
		}
		u := make([]float32, len(h))
		nf := float64(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			kerneltest.Impls(b, gemmImpls(n <= 512), gemm.SetImpl, 2*nf*nf*nf/3, func(b *testing.B) {
				copy(u, h32)
				if err := CholeskyInverseUpper32(u, n); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
