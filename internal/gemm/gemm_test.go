package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/half"
)

// tol is the allowed error of a float32 product relative to Σ|a||b| (plus |C|
// when accumulating): float32 rounding over sums of a few thousand terms stays
// well below it.
const tol = 1e-5

// forEachImpl runs f with every kernel implementation available here, the
// portable Go one included, and with 1 and 3 goroutines. When the machine has
// no AVX-512 it also runs the best kernel's packing code (SIMD transposes and
// dequantization) with the AVX-512 register tile, 14×32, and a Go
// micro-kernel, so that the driver and packing of that path are tested too.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer SetImpl("")
	defer SetThreads(0)
	ks := append([]*kernel(nil), kernels...)
	if ks[0].mr != 14 {
		geom := *ks[0]
		geom.name, geom.mr, geom.nr, geom.mc, geom.nc = "geom14x32", 14, 32, 140, 1024
		geom.micro = microGeneric(14, 32)
		ks = append(ks, &geom)
	}
	for _, k := range ks {
		for _, th := range []int{1, 3} {
			active.Store(k)
			SetThreads(th)
			t.Run(fmt.Sprintf("impl=%s/threads=%d", k.name, th), f)
		}
	}
}

// microGeneric is a plain micro-kernel for any register tile.
func microGeneric(mr, nr int) microFunc {
	return func(kc int, a, b, c *float32, ldc int, acc bool) {
		A := unsafe.Slice(a, mr*kc)
		B := unsafe.Slice(b, nr*kc)
		C := unsafe.Slice(c, (mr-1)*ldc+nr)
		for i := 0; i < mr; i++ {
			for j := 0; j < nr; j++ {
				var s float32
				for p := 0; p < kc; p++ {
					s += A[p*mr+i] * B[p*nr+j]
				}
				if acc {
					C[i*ldc+j] += s
				} else {
					C[i*ldc+j] = s
				}
			}
		}
	}
}

func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// refWeight returns the float64 value of every element of a weight, computed
// from its raw storage independently of the package's widening code.
func refWeight(b Matrix) []float64 {
	n, k := b.Rows(), b.Cols()
	w := make([]float64, n*k)
	switch m := b.(type) {
	case opaque:
		return refWeight(m.Matrix)
	case *F32:
		return refWeight(*m)
	case *Int4:
		return refWeight(*m)
	case F32:
		for i, v := range m.Data[:n*k] {
			w[i] = float64(v)
		}
	case BF16:
		for i, v := range m.Data[:n*k] {
			w[i] = float64(math.Float32frombits(uint32(v) << 16))
		}
	case F16:
		for i, v := range m.Data[:n*k] {
			w[i] = float64(half.F16ToF32(v))
		}
	case Int4:
		for c := 0; c < n; c++ {
			for i := 0; i < k; i++ {
				g := int(m.GIdx[i])
				q := (m.QWeight[(i/8)*n+c] >> (4 * (i % 8))) & 15
				z := (m.QZeros[g*(n/8)+c/8]>>(4*(c%8)))&15 + 1
				s := float64(half.F16ToF32(m.Scales[g*n+c]))
				w[c*k+i] = s * float64(q-z)
			}
		}
	case Affine:
		per := 32 / m.Bits
		for r := 0; r < n; r++ {
			for i := 0; i < k; i++ {
				q := m.Weight[r*(k/per)+i/per] >> (m.Bits * (i % per)) & (1<<m.Bits - 1)
				g := r*(k/m.Group) + i/m.Group
				w[r*k+i] = float64(m.Scales[g])*float64(q) + float64(m.Biases[g])
			}
		}
	default:
		panic("refWeight: unknown type")
	}
	return w
}

// checkMulT compares MulT against a float64 triple loop.
func checkMulT(t *testing.T, b Matrix, m int, acc bool, seed uint64) {
	t.Helper()
	n, k := b.Rows(), b.Cols()
	r := rand.New(rand.NewPCG(seed, 7))
	a := randF32(r, m*k)
	c := randF32(r, m*n)
	c0 := append([]float32(nil), c...)
	MulT(c, a, b, m, acc)
	w := refWeight(b)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, bound float64
			for p := 0; p < k; p++ {
				x := float64(a[i*k+p]) * w[j*k+p]
				s += x
				bound += math.Abs(x)
			}
			if acc {
				s += float64(c0[i*n+j])
				bound += math.Abs(float64(c0[i*n+j]))
			}
			got := float64(c[i*n+j])
			if math.Abs(got-s) > tol*bound+1e-30 || math.IsNaN(got) {
				t.Fatalf("%T m=%d n=%d k=%d acc=%v: C[%d,%d] = %v, want %v (bound %v)", b, m, n, k, acc, i, j, got, s, bound)
			}
		}
	}
}

var shapes = [][3]int{ // m, n, k
	{0, 5, 3}, {3, 0, 4}, {2, 3, 0}, {1, 1, 1}, {1, 37, 13}, {7, 1, 9}, {5, 3, 1},
	{6, 16, 8}, {14, 32, 256}, {13, 29, 300}, {64, 64, 64}, {65, 33, 257},
	{1, 130, 1000}, {200, 150, 513}, {3, 17, 4099}, {150, 1100, 70}, {31, 2100, 40},
	{4, 1, 40}, {2, 5, 17}, {6, 301, 64}, // few rows: the unpacked dot-form path
}

func TestMulTF32(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for si, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			r := rand.New(rand.NewPCG(uint64(si), 1))
			b := F32{Data: randF32(r, n*k), N: n, K: k}
			for _, acc := range []bool{false, true} {
				checkMulT(t, b, m, acc, uint64(si))
			}
		}
	})
}

func randHalf(r *rand.Rand, n int, bf bool) []uint16 {
	s := make([]uint16, n)
	for i := range s {
		f := float32(r.NormFloat64())
		if bf {
			s[i] = half.F32ToBF16(f)
		} else {
			s[i] = half.F32ToF16(f)
		}
	}
	return s
}

// opaque hides a matrix's type, so that products go through Widen.
type opaque struct{ Matrix }

func TestMulTOpaque(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 9))
		for _, s := range [][3]int{{1, 40, 24}, {20, 72, 296}} {
			m, n, k := s[0], s[1], s[2]
			checkMulT(t, opaque{F32{Data: randF32(r, n*k), N: n, K: k}}, m, true, 1)
			checkMulT(t, opaque{BF16{Data: randHalf(r, n*k, true), N: n, K: k}}, m, false, 2)
			checkMulT(t, opaque{randInt4(r, n, k, 32, true)}, m, false, 3)
		}
	})
}

func TestMulTHalf(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for si, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			r := rand.New(rand.NewPCG(uint64(si), 2))
			for _, acc := range []bool{false, true} {
				checkMulT(t, BF16{Data: randHalf(r, n*k, true), N: n, K: k}, m, acc, uint64(si))
				checkMulT(t, F16{Data: randHalf(r, n*k, false), N: n, K: k}, m, acc, uint64(si))
			}
		}
	})
}

// randInt4 builds a random GPTQ matrix with the given group size; actOrder
// assigns groups through a random permutation of the inputs (non-monotone
// g_idx), as desc_act checkpoints do.
func randInt4(r *rand.Rand, n, k, groupSize int, actOrder bool) Int4 {
	groups := (k + groupSize - 1) / groupSize
	m := Int4{
		QWeight: make([]int32, k/8*n),
		QZeros:  make([]int32, groups*n/8),
		Scales:  make([]uint16, groups*n),
		GIdx:    make([]int32, k),
		N:       n, K: k,
	}
	for i := range m.QWeight {
		m.QWeight[i] = int32(r.Uint32())
	}
	for i := range m.QZeros {
		m.QZeros[i] = int32(r.Uint32())
	}
	for i := range m.Scales {
		m.Scales[i] = half.F32ToF16(float32(0.001 + 0.02*r.Float64()))
	}
	perm := r.Perm(k)
	for i := range m.GIdx {
		if actOrder {
			m.GIdx[i] = int32(perm[i] / groupSize)
		} else {
			m.GIdx[i] = int32(i / groupSize)
		}
	}
	return m
}

var int4Shapes = [][4]int{ // m, n, k, group size
	{1, 8, 8, 8}, {0, 8, 8, 8}, {3, 8, 0, 8}, {1, 64, 256, 128}, {3, 24, 40, 16}, {70, 136, 264, 64},
	{1, 1032, 520, 128}, {17, 200, 1024, 128}, {2, 40, 48, 48}, {1, 56, 96, 12}, {1, 48, 64, 8},
}

func TestMulTInt4(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for si, s := range int4Shapes {
			r := rand.New(rand.NewPCG(uint64(si), 3))
			for _, act := range []bool{false, true} {
				b := randInt4(r, s[1], s[2], s[3], act)
				if err := b.check(); err != nil {
					t.Fatal(err)
				}
				for _, acc := range []bool{false, true} {
					checkMulT(t, b, s[0], acc, uint64(si))
				}
			}
		}
	})
}

// TestWiden checks every Matrix's Widen on unaligned blocks against the
// reference values.
func TestWiden(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	n, k := 40, 72
	ms := []Matrix{
		F32{Data: randF32(r, n*k), N: n, K: k},
		BF16{Data: randHalf(r, n*k, true), N: n, K: k},
		F16{Data: randHalf(r, n*k, false), N: n, K: k},
		randInt4(r, n, k, 16, false),
		randInt4(r, n, k, 24, true),
	}
	blocks := [][4]int{{0, n, 0, k}, {3, 17, 5, 30}, {9, 10, 71, 72}, {0, 1, 0, 1}, {33, 40, 8, 64}, {5, 5, 0, 3}}
	for _, b := range ms {
		want := refWeight(b)
		for _, bl := range blocks {
			r0, r1, c0, c1 := bl[0], bl[1], bl[2], bl[3]
			ld := c1 - c0 + 3
			dst := make([]float32, max(0, (r1-r0)*ld))
			b.Widen(dst, ld, r0, r1, c0, c1)
			got := make([]float64, 0, (r1-r0)*(c1-c0))
			exp := make([]float64, 0, (r1-r0)*(c1-c0))
			for r := r0; r < r1; r++ {
				for c := c0; c < c1; c++ {
					got = append(got, float64(dst[(r-r0)*ld+c-c0]))
					exp = append(exp, want[r*k+c])
				}
			}
			if d := cmp.Diff(exp, got); d != "" {
				t.Errorf("%T.Widen(%v) (-want +got):\n%s", b, bl, d)
			}
		}
	}
}

func TestSyrkAdd(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, s := range [][2]int{{0, 5}, {1, 1}, {7, 3}, {50, 33}, {2100, 37}, {300, 310}} {
			n, k := s[0], s[1]
			r := rand.New(rand.NewPCG(uint64(n), uint64(k)))
			x := randF32(r, n*k)
			h := make([]float64, k*k)
			for i := range h {
				h[i] = float64(i % 7)
			}
			h0 := append([]float64(nil), h...)
			SyrkAdd(h, x, n, k)
			for i := 0; i < k; i++ {
				for j := 0; j < k; j++ {
					var s, bound float64
					for p := 0; p < n; p++ {
						v := float64(x[p*k+i]) * float64(x[p*k+j])
						s += v
						bound += math.Abs(v)
					}
					want := h0[i*k+j] + s
					if got := h[i*k+j]; math.Abs(got-want) > tol*bound+1e-12 {
						t.Fatalf("n=%d k=%d: H[%d,%d] = %v, want %v", n, k, i, j, got, want)
					}
				}
			}
		}
	})
}

func TestPeakGFLOPS(t *testing.T) {
	if g := PeakGFLOPS(1, 0); !(g > 0) {
		t.Fatalf("PeakGFLOPS = %v", g)
	}
}

func TestSetImpl(t *testing.T) {
	defer SetImpl("")
	if err := SetImpl("nonesuch"); err == nil {
		t.Fatal("SetImpl(nonesuch) succeeded")
	}
	for _, name := range Impls() {
		if err := SetImpl(name); err != nil || Impl() != name {
			t.Fatalf("SetImpl(%q) = %v, Impl() = %q", name, err, Impl())
		}
	}
	if Impls()[len(Impls())-1] != "go" {
		t.Fatalf("Impls() = %v, want the Go kernel last", Impls())
	}
}

func TestHessian(t *testing.T) {
	const k = 21
	r := rand.New(rand.NewPCG(5, 5))
	acc := NewHessian(k, 10)
	want := make([]float64, k*k)
	for _, n := range []int{0, 3, 7, 1, 25, 4, 10} {
		x := randF32(r, n*k)
		acc.Add(x, n)
		SyrkAdd(want, x, n, k)
	}
	if acc.Rows() != 50 || acc.K() != k {
		t.Fatalf("Rows() = %d, K() = %d", acc.Rows(), acc.K())
	}
	got := acc.H()
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4*(1+math.Abs(want[i])) {
			t.Fatalf("H[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if NewHessian(5632, 0).bufRows < 64 {
		t.Fatal("default buffer too small")
	}
}

func TestSelfCheck(t *testing.T) {
	for _, k := range kernels {
		if err := selfCheck(k); err != nil {
			t.Errorf("%s: %v", k.name, err)
		}
	}
	bad := *goKernel
	bad.micro = func(kc int, a, b, c *float32, ldc int, acc bool) { goKernel.micro(kc, a, b, c, ldc, false) }
	if selfCheck(&bad) == nil {
		t.Error("selfCheck accepted a kernel that ignores acc")
	}
	if ks := checkedKernels([]*kernel{&bad, goKernel}); len(ks) != 1 || ks[0] != goKernel {
		t.Errorf("checkedKernels kept %d kernels", len(ks))
	}
}

func TestPointerMatricesAndBadGIdx(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	f := F32{Data: randF32(r, 24*16), N: 24, K: 16}
	q := randInt4(r, 24, 16, 8, true)
	checkMulT(t, &f, 1, false, 1)
	checkMulT(t, &q, 3, false, 2)
	q.GIdx[5] = 99
	defer func() {
		if recover() == nil {
			t.Error("Widen accepted g_idx out of range")
		}
	}()
	q.Widen(make([]float32, 24*16), 16, 0, 24, 0, 16)
}

func TestDot(t *testing.T) {
	for _, impl := range Impls() {
		SetImpl(impl)
		for _, n := range []int{0, 1, 7, 32, 33, 100} {
			a, b := make([]float32, n), make([]float32, n+3)
			var want float64
			for i := range a {
				a[i], b[i] = float32(i%7)-3, float32(i%5)*0.5
				want += float64(a[i]) * float64(b[i])
			}
			if got := Dot(a, b); math.Abs(float64(got)-want) > 1e-4*(1+math.Abs(want)) {
				t.Errorf("%s n=%d: Dot = %v, want %v", impl, n, got, want)
			}
		}
	}
	SetImpl("")
}
