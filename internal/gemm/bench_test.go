package gemm

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
)

// Benchmarks report GFLOPS (2·m·n·k per product, over wall time) and
// GFLOPS/cpu (over the CPU time the process used: the rate per busy core,
// which other load on the machine disturbs less). Each product runs with the
// best SIMD kernel (impl=asm) and with the portable Go kernel (impl=go):
//
//	go test -run '^$' -bench . -count 5 ./internal/gemm | tee bench.txt
//	go run golang.org/x/perf/cmd/benchstat@latest bench.txt

func BenchmarkPeak(b *testing.B) {
	for _, th := range []int{1, Threads()} {
		b.Run(fmt.Sprintf("threads=%d", th), func(b *testing.B) {
			var g float64
			for b.Loop() {
				g = PeakGFLOPS(th, 200*time.Millisecond)
			}
			b.ReportMetric(g, "GFLOPS")
			b.ReportMetric(g/float64(th), "GFLOPS/core")
		})
	}
}

// impls are the implementations each product runs with: the best SIMD
// kernel (impl=asm) and the portable Go one (impl=go).
func impls() []kerneltest.Impl {
	best := Impls()[0]
	if best == "go" {
		return []kerneltest.Impl{{Sub: "go", Name: "go"}}
	}
	return []kerneltest.Impl{{Sub: "asm", Name: best}, {Sub: "go", Name: "go"}}
}

func benchMulT(b *testing.B, w Matrix, m int) {
	n, k := w.Rows(), w.Cols()
	r := rand.New(rand.NewPCG(1, 2))
	a := randF32(r, m*k)
	c := make([]float32, m*n)
	kerneltest.Impls(b, impls(), SetImpl, 2*float64(m)*float64(n)*float64(k), func(*testing.B) { MulT(c, a, w, m, false) })
}

func BenchmarkSquareF32(b *testing.B) {
	for _, s := range []int{256, 512, 1024, 2048} {
		r := rand.New(rand.NewPCG(uint64(s), 1))
		w := F32{Data: randF32(r, s*s), N: s, K: s}
		b.Run(fmt.Sprintf("n=%d", s), func(b *testing.B) { benchMulT(b, w, s) })
	}
}

// Qwen1.5-MoE-A2.7B shapes: expert gate/up [1408, 2048], down [2048, 1408],
// shared expert [5632, 2048], lm_head [151936, 2048].
var expertShapes = [][2]int{{1408, 2048}, {2048, 1408}}

var routedTokens = []int{1, 4, 16, 64, 128, 256, 512}

func BenchmarkExpertF32(b *testing.B) {
	for _, s := range expertShapes {
		r := rand.New(rand.NewPCG(uint64(s[0]), 1))
		w := F32{Data: randF32(r, s[0]*s[1]), N: s[0], K: s[1]}
		for _, m := range routedTokens {
			b.Run(fmt.Sprintf("%dx%d/m=%d", s[0], s[1], m), func(b *testing.B) { benchMulT(b, w, m) })
		}
	}
}

func BenchmarkExpertBF16(b *testing.B) {
	for _, s := range expertShapes {
		r := rand.New(rand.NewPCG(uint64(s[0]), 1))
		w := BF16{Data: randHalf(r, s[0]*s[1], true), N: s[0], K: s[1]}
		for _, m := range routedTokens {
			b.Run(fmt.Sprintf("%dx%d/m=%d", s[0], s[1], m), func(b *testing.B) { benchMulT(b, w, m) })
		}
	}
}

func BenchmarkExpertInt4(b *testing.B) {
	for _, s := range expertShapes {
		for _, act := range []bool{false, true} {
			r := rand.New(rand.NewPCG(uint64(s[0]), 1))
			w := randInt4(r, s[0], s[1], 128, act)
			for _, m := range routedTokens {
				b.Run(fmt.Sprintf("%dx%d/act=%v/m=%d", s[0], s[1], act, m), func(b *testing.B) { benchMulT(b, w, m) })
			}
		}
	}
}

// BenchmarkExpertAffine: the same expert shapes as MLX 4-bit affine
// weights (group 64), dequantized by the portable Widen.
func BenchmarkExpertAffine(b *testing.B) {
	for _, s := range expertShapes {
		r := rand.New(rand.NewPCG(uint64(s[0]), 1))
		w := randAffine(r, s[0], s[1], 4, 64)
		for _, m := range routedTokens {
			b.Run(fmt.Sprintf("%dx%d/m=%d", s[0], s[1], m), func(b *testing.B) { benchMulT(b, w, m) })
		}
	}
}

func BenchmarkSharedExpert(b *testing.B) {
	r := rand.New(rand.NewPCG(5632, 1))
	wf := F32{Data: randF32(r, 5632*2048), N: 5632, K: 2048}
	b.Run("f32/m=256", func(b *testing.B) { benchMulT(b, wf, 256) })
	wb := BF16{Data: randHalf(r, 5632*2048, true), N: 5632, K: 2048}
	b.Run("bf16/m=256", func(b *testing.B) { benchMulT(b, wb, 256) })
}

var lmHead = sync.OnceValue(func() BF16 {
	const n, k = 151936, 2048
	r := rand.New(rand.NewPCG(151936, 1))
	return BF16{Data: randHalf(r, n*k, true), N: n, K: k}
})

// BenchmarkLMHead uses a bfloat16 lm_head (622 MB; 1.2 GB as float32),
// allocated on first use.
func BenchmarkLMHead(b *testing.B) {
	w := lmHead()
	for _, m := range []int{1, 16} {
		b.Run(fmt.Sprintf("bf16/m=%d", m), func(b *testing.B) { benchMulT(b, w, m) })
	}
}

func BenchmarkSyrkAdd(b *testing.B) {
	const n, k = 512, 2048
	r := rand.New(rand.NewPCG(3, 3))
	x := randF32(r, n*k)
	h := make([]float64, k*k)
	// Useful work: the k(k+1)/2 distinct entries, 2n flops each.
	kerneltest.Impls(b, impls(), SetImpl, float64(n)*float64(k)*float64(k+1), func(*testing.B) { SyrkAdd(h, x, n, k) })
}

// BenchmarkWiden times whole-matrix widening of a 1408×2048 expert weight
// (reported as elements per second).
func BenchmarkWiden(b *testing.B) {
	const n, k = 1408, 2048
	r := rand.New(rand.NewPCG(7, 7))
	ms := map[string]Matrix{
		"bf16": BF16{Data: randHalf(r, n*k, true), N: n, K: k},
		"f16":  F16{Data: randHalf(r, n*k, false), N: n, K: k},
		"int4": randInt4(r, n, k, 128, false),
	}
	dst := make([]float32, n*k)
	for _, name := range []string{"bf16", "f16", "int4"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				ms[name].Widen(dst, k, 0, n, 0, k)
			}
			b.ReportMetric(float64(n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
