package gemm

import (
	"math/rand/v2"
	"testing"
)

// randAffine builds a random MLX affine matrix.
func randAffine(r *rand.Rand, n, k, bits, group int) Affine {
	m := Affine{Bits: bits, Group: group, N: n, K: k,
		Weight: make([]uint32, n*k*bits/32), Scales: randF32(r, n*k/group), Biases: randF32(r, n*k/group)}
	for i := range m.Weight {
		m.Weight[i] = r.Uint32()
	}
	return m
}

func TestMulTAffine(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][4]int{{8, 64, 4, 32}, {24, 128, 4, 64}, {40, 256, 8, 128}, {16, 64, 2, 32}, {33, 96, 4, 32}} {
		b := randAffine(r, s[0], s[1], s[2], s[3])
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
		for _, m := range []int{1, 3, 17, 70} {
			forEachImpl(t, func(t *testing.T) { checkMulT(t, b, m, m%2 == 1, uint64(m)) })
		}
	}
}

// TestAffineWidenCodes pins the code order: least significant bits first
// along the input dimension.
func TestAffineWidenCodes(t *testing.T) {
	m := Affine{Bits: 4, Group: 8, N: 1, K: 8, Weight: []uint32{0x76543210}, Scales: []float32{2}, Biases: []float32{-1}}
	dst := make([]float32, 8)
	m.Widen(dst, 8, 0, 1, 0, 8)
	for i, v := range dst {
		if want := float32(2*i - 1); v != want {
			t.Errorf("input %d = %g, want %g", i, v, want)
		}
	}
	m8 := Affine{Bits: 8, Group: 4, N: 1, K: 4, Weight: []uint32{0x04030201}, Scales: []float32{1}, Biases: []float32{0}}
	dst = dst[:4]
	m8.Widen(dst, 4, 0, 1, 0, 4)
	for i, v := range dst {
		if v != float32(i+1) {
			t.Errorf("8-bit input %d = %g, want %d", i, v, i+1)
		}
	}
	if err := (Affine{Bits: 3, Group: 32, N: 1, K: 32}).Check(); err == nil {
		t.Error("3 bits accepted")
	}
	if err := (Affine{Bits: 4, Group: 32, N: 1, K: 64, Weight: make([]uint32, 7), Scales: make([]float32, 2), Biases: make([]float32, 2)}).Check(); err == nil {
		t.Error("short weight accepted")
	}
}
