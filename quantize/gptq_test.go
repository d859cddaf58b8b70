package quantize

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/internal/linalg"
)

// calibProblem makes a weight [out, in] and calibration inputs X [n, in]
// whose features are correlated (X = Z·A) and of unequal scale, as
// activations are; some inputs can be forced dead (always 0).
func calibProblem(seed uint64, out, in, n int, dead []int) (w, x []float32) {
	rng := rand.New(rand.NewPCG(seed, 99))
	w = make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	a := make([]float32, in*in)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	scale := make([]float32, in)
	for i := range scale {
		scale[i] = float32(0.2 + 3*rng.Float64()*rng.Float64())
	}
	z := make([]float32, in)
	x = make([]float32, n*in)
	for r := 0; r < n; r++ {
		for i := range z {
			z[i] = float32(rng.NormFloat64())
		}
		row := x[r*in : (r+1)*in]
		for i := range row {
			var s float32
			// a sparse mix keeps the features correlated but not degenerate
			for k := 0; k < 8; k++ {
				j := (i + 7*k) % in
				s += z[j] * a[i*in+j]
			}
			row[i] = (s + z[i]) * scale[i]
		}
	}
	for _, d := range dead {
		for r := 0; r < n; r++ {
			x[r*in+d] = 0
		}
	}
	return w, x
}

// outputError is Σ over calibration rows of ‖(W − Q)·x‖², computed by brute
// force in float64 from the dequantized layer.
func outputError(w []float32, l *gptq.Layer, x []float32, n int) float64 {
	return outputErrorQ(w, l.Dequantize(), l.Out, l.In, x, n)
}

// outputErrorQ is outputError for a dequantized Q [out, in].
func outputErrorQ(w, q []float32, out, in int, x []float32, n int) float64 {
	var sum float64
	for r := 0; r < n; r++ {
		xr := x[r*in : (r+1)*in]
		for c := 0; c < out; c++ {
			var d float64
			for i, v := range xr {
				d += float64(w[c*in+i]-q[c*in+i]) * float64(v)
			}
			sum += d * d
		}
	}
	return sum
}

func hessianOf(x []float32, n, in int) []float64 {
	h := NewHessian(in)
	h.Add(x, n)
	return h.Matrix()
}

// TestGPTQBeatsRTN quantizes one layer with GPTQ and RTN and checks, by
// brute force on the calibration inputs, that GPTQ's output error
// Σ‖(W−Q)X‖² is below RTN's by a clear margin (at most 0.8× — GPTQ's
// advantage on correlated inputs is typically 2-4×), that the packed
// tensors unpack to the same Q, and that the int4 matrix of the forward
// pass dequantizes to exactly Q (tolerance 0).
func TestGPTQBeatsRTN(t *testing.T) {
	const out, in, n = 64, 256, 1024
	w, x := calibProblem(1, out, in, n, nil)
	h := hessianOf(x, n, in)
	tests := []struct {
		name string
		cfg  gptq.Config
	}{
		{"sym group -1", gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01}},
		{"sym group 128", gptq.Config{GroupSize: 128, Sym: true, DampPercent: 0.01}},
		{"sym group 32", gptq.Config{GroupSize: 32, Sym: true, DampPercent: 0.01}},
		{"asym group 32", gptq.Config{GroupSize: 32, Sym: false, DampPercent: 0.01}},
		{"sym group 8", gptq.Config{GroupSize: 8, Sym: true, DampPercent: 0.01}},
		{"act-order group 32", gptq.Config{GroupSize: 32, Sym: true, DescAct: true, DampPercent: 0.01}},
		{"act-order one group", gptq.Config{GroupSize: -1, Sym: true, DescAct: true, DampPercent: 0.01}},
		{"act-order static groups", gptq.Config{GroupSize: 32, Sym: true, DescAct: true, StaticGroups: true, DampPercent: 0.01}},
		{"asym act-order group 64", gptq.Config{GroupSize: 64, Sym: false, DescAct: true, DampPercent: 0.01}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := GPTQ(w, out, in, h, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r, err := RTN(w, out, in, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			eg, er := outputError(w, g.Layer, x, n), outputError(w, r.Layer, x, n)
			t.Logf("Σ‖(W−Q)X‖²: GPTQ %.4g, RTN %.4g (ratio %.3f); reference loss %.4g", eg, er, eg/er, g.Loss)
			if !(eg < 0.8*er) {
				t.Errorf("GPTQ error %.4g is not below 0.8× RTN's %.4g", eg, er)
			}
			checkPacked(t, g.Layer)
			if g.Damp != 0.01 || g.DampRaises != 0 || g.Dead != 0 {
				t.Errorf("damp %g, raises %d, dead %d; want 0.01, 0, 0", g.Damp, g.DampRaises, g.Dead)
			}
		})
	}
}

// checkPacked packs l, unpacks it, and checks that the result and the int4
// matrix of the forward pass give exactly l's weights.
func checkPacked(t *testing.T, l *gptq.Layer) {
	t.Helper()
	qw, qz, err := l.Pack()
	if err != nil {
		t.Fatal(err)
	}
	p, err := gptq.NewPacked(l.Layout, l.Out, l.In, qw, qz, l.Scales, l.GIdx)
	if err != nil {
		t.Fatal(err)
	}
	back, err := p.Unpack()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, back); diff != "" {
		t.Fatalf("unpacked layer differs (-want +got):\n%s", diff)
	}
	m, err := int4Matrix(l)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, l.Out*l.In)
	m.Widen(got, l.In, 0, l.Out, 0, l.In)
	want := l.Dequantize()
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("int4 matrix W[%d, %d] = %v, layer %v", i/l.In, i%l.In, got[i], want[i])
		}
	}
}

// referenceGPTQ is a direct transcription of the reference fasterquant
// (column by column, eager update of the whole block, float64), used to
// check the blocked, parallel implementation. It returns the dequantized Q
// [out, in] and the permutation.
func referenceGPTQ(w []float32, out, in int, h []float64, cfg gptq.Config) ([]float64, []int) {
	W := make([]float64, out*in)
	for i, v := range w {
		W[i] = float64(v)
	}
	H := append([]float64(nil), h...)
	for i := 0; i < in; i++ {
		if H[i*in+i] == 0 {
			H[i*in+i] = 1
			for c := 0; c < out; c++ {
				W[c*in+i] = 0
			}
		}
	}
	perm := make([]int, in)
	for i := range perm {
		perm[i] = i
	}
	if cfg.DescAct {
		sort.SliceStable(perm, func(a, b int) bool { return H[perm[a]*in+perm[a]] > H[perm[b]*in+perm[b]] })
		H = permuteSym(H, in, perm)
		P := make([]float64, out*in)
		for c := 0; c < out; c++ {
			for j, p := range perm {
				P[c*in+j] = W[c*in+p]
			}
		}
		W = P
	}
	var mean float64
	for i := 0; i < in; i++ {
		mean += H[i*in+i]
	}
	for i := 0; i < in; i++ {
		H[i*in+i] += cfg.DampPercent * mean / float64(in)
	}
	U, err := linalg.CholeskyInverseUpper(H, in)
	if err != nil {
		panic(err)
	}
	gw := groupWidth(cfg, in)
	bits := cfg.Bits
	if bits == 0 {
		bits = 4
	}
	maxq := float64(int(1)<<bits - 1)
	v2 := cfg.CheckpointFormat == gptq.FormatV2
	Q := make([]float64, out*in)
	scale := make([]float64, out)
	zero := make([]float64, out)
	grid := func(c, j0, j1 int) {
		lo, hi := 0.0, 0.0
		for j := j0; j < j1; j++ {
			lo, hi = math.Min(lo, W[c*in+j]), math.Max(hi, W[c*in+j])
		}
		var s, z float64
		if cfg.Sym {
			a := math.Max(-lo, hi)
			if a == 0 {
				a = 1
			}
			s, z = 2*a/maxq, (maxq+1)/2
		} else {
			if lo == 0 && hi == 0 {
				lo, hi = -1, 1
			}
			s = (hi - lo) / maxq
			z = math.RoundToEven(-lo / s)
			if z < 1 && !v2 {
				z, s = 1, hi/(maxq-1)
			}
			z = math.Max(math.Min(z, maxq), 0)
		}
		scale[c] = float64(half.F16ToF32(half.F32ToF16(float32(s))))
		zero[c] = z
	}
	for b0 := 0; b0 < in; b0 += 128 {
		b1 := min(b0+128, in)
		E := make([]float64, out*(b1-b0))
		for j := b0; j < b1; j++ {
			if j%gw == 0 {
				for c := 0; c < out; c++ {
					grid(c, j, min(j+gw, in))
				}
			}
			d := U[j*in+j]
			for c := 0; c < out; c++ {
				wv := W[c*in+j]
				q := math.Min(math.Max(math.RoundToEven(wv/scale[c])+zero[c], 0), maxq)
				Q[c*in+j] = scale[c] * (q - zero[c])
				e := (wv - Q[c*in+j]) / d
				E[c*(b1-b0)+j-b0] = e
				for k := j + 1; k < b1; k++ {
					W[c*in+k] -= e * U[j*in+k]
				}
			}
		}
		for c := 0; c < out; c++ {
			for k := b1; k < in; k++ {
				var s float64
				for j := b0; j < b1; j++ {
					s += E[c*(b1-b0)+j-b0] * U[j*in+k]
				}
				W[c*in+k] -= s
			}
		}
	}
	if cfg.DescAct {
		P := make([]float64, out*in)
		for c := 0; c < out; c++ {
			for j, p := range perm {
				P[c*in+p] = Q[c*in+j]
			}
		}
		Q = P
	}
	return Q, perm
}

// TestGPTQMatchesReference checks the blocked, multi-threaded GPTQ against
// the direct transcription of the reference loop. The float32
// implementation and the float64 transcription round differently, so a code
// can land on the neighbouring grid point, or a group's maximum on the
// neighbouring float16 scale, and the difference then propagates through
// the error feedback: at least 99% of the weights must be identical, the
// output errors Σ‖(W−Q)X‖² must agree within 1%, and act-order g_idx must be
// (position in descending-diag order) / group size.
func TestGPTQMatchesReference(t *testing.T) {
	const out, in, n = 128, 384, 768
	w, x := calibProblem(2, out, in, n, []int{5, 200})
	h := hessianOf(x, n, in)
	tests := []struct {
		name    string
		cfg     gptq.Config
		threads int
	}{
		{"group 128, 1 thread", gptq.Config{GroupSize: 128, Sym: true, DampPercent: 0.01}, 1},
		{"group 32, 2 threads", gptq.Config{GroupSize: 32, Sym: true, DampPercent: 0.01}, 2},
		{"act-order group 32, 2 threads", gptq.Config{GroupSize: 32, Sym: true, DescAct: true, DampPercent: 0.01}, 2},
		{"asym act-order one group", gptq.Config{GroupSize: -1, Sym: false, DescAct: true, DampPercent: 0.01}, 2},
		{"2-bit group 64", gptq.Config{Bits: 2, GroupSize: 64, Sym: true, DampPercent: 0.01}, 2},
		{"3-bit group 128", gptq.Config{Bits: 3, GroupSize: 128, Sym: true, DampPercent: 0.01}, 2},
		{"3-bit asym v2 act-order", gptq.Config{Bits: 3, GroupSize: 128, Sym: false, DescAct: true, DampPercent: 0.01, CheckpointFormat: gptq.FormatV2}, 2},
		{"8-bit group 128", gptq.Config{Bits: 8, GroupSize: 128, Sym: true, DampPercent: 0.01}, 2},
		{"8-bit asym v1", gptq.Config{Bits: 8, GroupSize: 32, Sym: false, DampPercent: 0.01}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := gptqThreads(w, out, in, slices.Clone(h), tc.cfg, tc.threads)
			if err != nil {
				t.Fatal(err)
			}
			if res.Dead != 2 {
				t.Errorf("dead inputs = %d, want 2", res.Dead)
			}
			ref, perm := referenceGPTQ(w, out, in, h, tc.cfg)
			got := res.Layer.Dequantize()
			same := 0
			for i := range got {
				if float64(got[i]) == ref[i] {
					same++
				}
			}
			if frac := float64(same) / float64(len(got)); frac < 0.99 {
				t.Errorf("only %.4f of the weights equal the reference's", frac)
			}
			refQ := make([]float32, len(ref))
			for i, v := range ref {
				refQ[i] = float32(v)
			}
			eg, er := outputError(w, res.Layer, x, n), outputErrorQ(w, refQ, out, in, x, n)
			if math.Abs(eg-er) > 0.01*er {
				t.Errorf("output error %.6g differs from the reference's %.6g by more than 1%%", eg, er)
			}
			for _, d := range []int{5, 200} {
				for c := 0; c < out; c++ {
					if got[c*in+d] != 0 {
						t.Fatalf("dead input %d: W[%d] = %v, want 0", d, c, got[c*in+d])
					}
				}
			}
			want := gptq.GroupIndex(in, tc.cfg.GroupSize, nil)
			if tc.cfg.DescAct {
				want = gptq.GroupIndex(in, tc.cfg.GroupSize, perm)
			}
			if diff := cmp.Diff(want, res.Layer.GIdx); diff != "" {
				t.Errorf("g_idx (-want +got):\n%s", diff)
			}
			checkPacked(t, res.Layer)
		})
	}
}

// TestGPTQDiagonalHessianIsRTN: with a diagonal Hessian the inverse factor is
// diagonal, no error is propagated, and GPTQ must give RTN's codes exactly.
func TestGPTQDiagonalHessianIsRTN(t *testing.T) {
	const out, in = 32, 96
	w, _ := calibProblem(3, out, in, 1, nil)
	h := make([]float64, in*in)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := 0; i < in; i++ {
		h[i*in+i] = 0.1 + rng.Float64()
	}
	for _, cfg := range []gptq.Config{{GroupSize: 32, Sym: true, DampPercent: 0.01}, {GroupSize: -1, Sym: false, DampPercent: 0.01}} {
		g, err := GPTQ(w, out, in, h, cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RTN(w, out, in, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r.Layer, g.Layer); diff != "" {
			t.Errorf("%+v: GPTQ with diagonal H differs from RTN (-rtn +gptq):\n%s", cfg, diff)
		}
	}
}

func TestGPTQDampingAndErrors(t *testing.T) {
	const out, in = 8, 8
	w, _ := calibProblem(5, out, in, 1, nil)
	// Blocks [[1 3] [3 1]] have eigenvalues 4 and −2: the damping must reach
	// λ·mean(diag) = 10 > 2 before the matrix is positive definite.
	h := make([]float64, in*in)
	for b := 0; b < in; b += 2 {
		h[b*in+b], h[(b+1)*in+b+1] = 1, 1
		h[b*in+b+1], h[(b+1)*in+b] = 3, 3
	}
	res, err := GPTQ(w, out, in, h, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if res.DampRaises != 3 || math.Abs(res.Damp-10) > 1e-12 {
		t.Errorf("damping raised %d times to %g; want 3 times to 10", res.DampRaises, res.Damp)
	}
	neg := make([]float64, in*in)
	for i := 0; i < in; i++ {
		neg[i*in+i] = 1
	}
	neg[0] = -1e6
	nan := append([]float32(nil), w...)
	nan[13] = float32(math.NaN())
	hinf := make([]float64, in*in)
	hinf[9] = math.Inf(1)
	tests := []struct {
		name string
		w    []float32
		h    []float64
		cfg  gptq.Config
		want string
	}{
		{"hopeless Hessian", w, neg, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01}, "not positive definite even with damping"},
		{"NaN weight", nan, h, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01}, "weight [1, 5] is NaN"},
		{"Inf Hessian", w, hinf, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01}, "Hessian entry [1, 1] is +Inf"},
		{"bad group", w, h, gptq.Config{GroupSize: 48, Sym: true, DampPercent: 0.01}, "group_size=48"},
		{"bad damp", w, h, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0}, "damp_percent=0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := GPTQ(tc.w, out, in, tc.h, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := GPTQ(w, 12, 8, h, gptq.Config{GroupSize: -1, Sym: true, DampPercent: 0.01}); err == nil {
		t.Error("GPTQ accepted a matrix with 12 rows")
	}
}

// TestFindParams checks the grid rule of ALGORITHMS.md §3 step 7 on single
// rows (tolerance: exact float16 patterns).
func TestFindParams(t *testing.T) {
	f16 := func(v float32) uint16 { return half.F32ToF16(v) }
	tests := []struct {
		name   string
		vals   []float32
		sym    bool
		scale  uint16
		zero   uint8
		errStr string
	}{
		{"sym mixed", []float32{-0.3, 0.15, 0.6}, true, f16(2 * 0.6 / 15), 8, ""},
		{"sym all positive uses 2·max", []float32{0.1, 0.75}, true, f16(2 * 0.75 / 15), 8, ""},
		{"sym all zero", []float32{0, 0}, true, f16(2.0 / 15), 8, ""},
		{"asym mixed", []float32{-0.3, 0.9}, false, f16(1.2 / 15), 4, ""},
		// float32: 1/(2/15) = 7.4999995, so the zero is 7, as in torch
		{"asym all zero", []float32{0, 0}, false, f16(2.0 / 15), 7, ""},
		{"asym non-negative: zero 1", []float32{0, 0.7}, false, f16(0.7 / 14), 1, ""},
		{"asym non-positive", []float32{-0.9, 0}, false, f16(0.9 / 15), 15, ""},
		{"tiny scale stays positive", []float32{1e-9, -1e-9}, true, 1, 8, ""},
		{"overflow", []float32{1e6}, true, 0, 0, "overflows float16"},
	}
	// gptq_v2 stores a zero of 0: a non-negative group keeps its natural
	// grid; 3 and 8 bits use their own maxq.
	v2 := []struct {
		name  string
		vals  []float32
		g     grid
		scale uint16
		zero  uint8
	}{
		{"v2 asym non-negative: zero 0", []float32{0, 0.7}, grid{maxq: 15, zero0: true}, f16(0.7 / 15), 0},
		{"3-bit sym", []float32{-0.3, 0.7}, grid{maxq: 7, sym: true}, f16(2 * 0.7 / 7), 4},
		{"8-bit sym", []float32{-0.3, 0.7}, grid{maxq: 255, sym: true}, f16(2 * 0.7 / 255), 128},
		{"2-bit v1 asym non-negative: zero 1", []float32{0, 0.6}, grid{maxq: 3}, f16(0.6 / 2), 1},
		{"8-bit asym", []float32{-0.51, 0.51}, grid{maxq: 255}, f16(1.02 / 255), 128},
	}
	for _, tc := range v2 {
		sc, sf, zs := make([]uint16, 1), make([]float32, 1), make([]uint8, 1)
		if _, err := findParams(tc.vals, 1, 0, len(tc.vals), 0, 1, tc.g, sc, sf, zs); err != nil {
			t.Fatal(err)
		}
		if sc[0] != tc.scale || zs[0] != tc.zero {
			t.Errorf("%s: scale %#04x, zero %d; want %#04x, %d", tc.name, sc[0], zs[0], tc.scale, tc.zero)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, sf, zs := make([]uint16, 1), make([]float32, 1), make([]uint8, 1)
			_, err := findParams(tc.vals, 1, 0, len(tc.vals), 0, 1, grid{maxq: 15, sym: tc.sym}, sc, sf, zs)
			if tc.errStr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errStr) {
					t.Fatalf("error = %v, want %q", err, tc.errStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sc[0] != tc.scale || zs[0] != tc.zero || sf[0] != half.F16ToF32(sc[0]) {
				t.Errorf("scale %#04x (%v), zero %d; want %#04x (%v), %d", sc[0], sf[0], zs[0], tc.scale, half.F16ToF32(tc.scale), tc.zero)
			}
		})
	}
}

// BenchmarkGPTQExpert quantizes one Qwen1.5-MoE-sized expert matrix
// (W [1408, 2048], group 128, sym) with the Hessian of 512 random tokens.
func BenchmarkGPTQExpert(b *testing.B) {
	const out, in, n = 1408, 2048, 512
	rng := rand.New(rand.NewPCG(7, 7))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	h := hessianOf(x, n, in)
	cfg := gptq.Config{GroupSize: 128, Sym: true, DampPercent: 0.01}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := GPTQ(w, out, in, h, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

// BenchmarkGPTQExpertParts times the two halves of BenchmarkGPTQExpert
// apart: the damped inverse's factor of the [2048, 2048] Hessian (shared by
// gate and up in a run) and the column walk of W [1408, 2048] with it.
func BenchmarkGPTQExpertParts(b *testing.B) {
	const out, in, n = 1408, 2048, 512
	rng := rand.New(rand.NewPCG(7, 7))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	h := hessianOf(x, n, in)
	cfg := gptq.Config{GroupSize: 128, Sym: true, DampPercent: 0.01}
	f, err := newFactor(slices.Clone(h), in, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("factor", func(b *testing.B) {
		c0 := cpuSeconds()
		hc := make([]float64, len(h))
		for i := 0; i < b.N; i++ {
			copy(hc, h)
			if _, err := newFactor(hc, in, cfg); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(2*float64(in)*in*in/3/1e9/(b.Elapsed().Seconds()/float64(b.N)), "GFLOPS")
		b.ReportMetric((cpuSeconds()-c0)*1e3/float64(b.N), "cpu-ms/op")
	})
	b.Run("columns", func(b *testing.B) {
		c0 := cpuSeconds()
		for i := 0; i < b.N; i++ {
			if _, err := gptqWith(w, out, in, f, cfg, gemm.Threads()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(out)*in*in/1e9/(b.Elapsed().Seconds()/float64(b.N)), "GFLOPS")
		b.ReportMetric((cpuSeconds()-c0)*1e3/float64(b.N), "cpu-ms/op")
	})
}

// cpuSeconds is the process's user + system CPU time (on a loaded machine
// wall time stretches, CPU time much less).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// TestFactorFloat64Fallback: for a Hessian that float32 cannot factor (rank
// 4 of 64 plus 1e-8·mean(diag)·I) but float64 can, upperInverseFactor
// returns the float64 factor, so the damping need not be raised.
func TestFactorFloat64Fallback(t *testing.T) {
	const in, n = 64, 4
	_, x := calibProblem(9, 1, in, n, nil)
	h := make([]float64, in*in) // Σ xxᵀ in float64: PSD to float64 rounding
	for p := 0; p < n; p++ {
		for i := 0; i < in; i++ {
			for j := 0; j < in; j++ {
				h[i*in+j] += float64(x[p*in+i]) * float64(x[p*in+j])
			}
		}
	}
	var mean float64
	for i := 0; i < in; i++ {
		mean += h[i*in+i] / in
	}
	for i := 0; i < in; i++ {
		h[i*in+i] += 1e-8 * mean
	}
	h32 := make([]float32, len(h))
	for i, v := range h {
		h32[i] = float32(v)
	}
	var npd *linalg.NotPositiveDefiniteError
	if err := linalg.CholeskyInverseUpper32(h32, in); !errors.As(err, &npd) {
		t.Fatalf("float32 factored the matrix (err %v): the test needs one it cannot", err)
	}
	want, err := linalg.CholeskyInverseUpper(h, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := upperInverseFactor(slices.Clone(h), in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range want {
		if got[i] != float32(v) {
			t.Fatalf("U[%d, %d] = %v, float64 gives %v", i/in, i%in, got[i], float32(v))
		}
	}
}
