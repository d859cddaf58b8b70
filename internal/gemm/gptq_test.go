package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/moeforge/moeforge/internal/gemm/kerneltest"
)

// randGPTQ returns a random GPTQ matrix of the given width (natural groups).
func randGPTQ(r *rand.Rand, bits, n, k, groupSize int, off int32) GPTQ {
	i4 := randInt4(r, n, k, groupSize, false)
	m := GPTQ{Bits: bits, ZeroOffset: off, QWeight: make([]int32, k*bits/32*n), QZeros: make([]int32, len(i4.Scales)/n*n*bits/32),
		Scales: i4.Scales, GIdx: i4.GIdx, N: n, K: k}
	for i := range m.QWeight {
		m.QWeight[i] = int32(r.Uint32())
	}
	for i := range m.QZeros {
		m.QZeros[i] = int32(r.Uint32())
	}
	return m
}

// TestGPTQMatchesInt4: the portable GPTQ matrix at 4 bits widens exactly
// like the SIMD Int4 path (v1 and v2 zeros), and the products agree.
func TestGPTQMatchesInt4(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const n, k = 48, 256
	for _, v2 := range []bool{false, true} {
		i4 := randInt4(r, n, k, 64, true)
		i4.V2 = v2
		off := int32(1)
		if v2 {
			off = 0
		}
		g := GPTQ{Bits: 4, ZeroOffset: off, QWeight: i4.QWeight, QZeros: i4.QZeros, Scales: i4.Scales, GIdx: i4.GIdx, N: n, K: k}
		if err := g.Check(); err != nil {
			t.Fatal(err)
		}
		a, b := make([]float32, n*k), make([]float32, n*k)
		i4.Widen(a, k, 0, n, 0, k)
		g.Widen(b, k, 0, n, 0, k)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("v2=%v: W[%d, %d] Int4 %v, GPTQ %v", v2, i/k, i%k, a[i], b[i])
			}
		}
		// A block that starts mid-word and mid-matrix.
		sub := make([]float32, 5*40)
		g.Widen(sub, 40, 3, 8, 17, 57)
		for rr := 3; rr < 8; rr++ {
			for c := 17; c < 57; c++ {
				if sub[(rr-3)*40+c-17] != a[rr*k+c] {
					t.Fatalf("v2=%v: block W[%d, %d] = %v, want %v", v2, rr, c, sub[(rr-3)*40+c-17], a[rr*k+c])
				}
			}
		}
	}
}

func TestGPTQCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	g := randGPTQ(r, 3, 32, 64, 32, 1)
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
	bad := g
	bad.QWeight = bad.QWeight[:len(bad.QWeight)-1]
	if bad.Check() == nil {
		t.Error("short qweight accepted")
	}
	bad = g
	bad.GIdx = append([]int32(nil), g.GIdx...)
	bad.GIdx[5] = 7
	if bad.Check() == nil {
		t.Error("g_idx beyond the groups accepted")
	}
	bad = g
	bad.Bits = 5
	if bad.Check() == nil {
		t.Error("5 bits accepted")
	}
}

// BenchmarkExpertGPTQ: products with a 1408×2048 expert at 2, 3 and 8 bits
// (portable dequantization) against the 4-bit Int4 path, one token and a
// routed batch.
func BenchmarkExpertGPTQ(b *testing.B) {
	const n, k = 1408, 2048
	r := rand.New(rand.NewPCG(4, 4))
	for _, bits := range []int{2, 3, 4, 8} {
		var w Matrix = randGPTQ(r, bits, n, k, 128, 1)
		name := fmt.Sprintf("gptq%d", bits)
		if bits == 4 {
			w, name = randInt4(r, n, k, 128, false), "int4"
		}
		for _, m := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/m=%d", name, m), func(b *testing.B) {
				a := randF32(r, m*k)
				c := make([]float32, m*n)
				cpu0 := kerneltest.CPUTime()
				for b.Loop() {
					MulT(c, a, w, m, false)
				}
				kerneltest.ReportFlops(b, 2*float64(m)*float64(n)*float64(k), cpu0)
			})
		}
	}
}
