package convert

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
)

// carveCalib is a calibration set of random ids for the tiny fixture.
func carveCalib(vocab int) [][]int { return corpus.RandomIDs(8, 64, vocab, 3) }

func carveTiny(t *testing.T, co CarveOptions, o UpcycleOptions) (*hf.Checkpoint, *Plan, string) {
	t.Helper()
	in := openCheckpoint(t, denseTiny(t))
	if co.Calibration == nil && co.Method != CarveContiguous {
		co.Calibration = carveCalib(in.Config.VocabSize)
	}
	o.Mode, o.Carve = Carve, co
	p, err := Upcycle(in, o)
	if err != nil {
		t.Fatal(err)
	}
	return in, p, writePlan(t, p, 0)
}

// tensorF32 reads a tensor of ck as float32.
func tensorF32(t *testing.T, ck *hf.Checkpoint, name string) []float32 {
	t.Helper()
	tt, err := ck.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// carvedNeurons recovers, for layer i of a carved output, which dense
// neuron each shared and routed neuron is (by matching gate_proj rows,
// unique in the random-weight fixture), and checks that every copied
// weight is exact: gate/up rows equal, down columns × 2 (shared) or × K.
func carvedNeurons(t *testing.T, dense, out *hf.Checkpoint, i int) (shared []int, experts [][]int) {
	t.Helper()
	c := out.Config
	H, F := c.HiddenSize, dense.Config.IntermediateSize
	dg := tensorF32(t, dense, hf.MLPLinear(i, hf.GateProj)+".weight")
	du := tensorF32(t, dense, hf.MLPLinear(i, hf.UpProj)+".weight")
	dd := tensorF32(t, dense, hf.MLPLinear(i, hf.DownProj)+".weight")
	byRow := map[string]int{}
	for n := 0; n < F; n++ {
		byRow[string(f32Bytes(dg[n*H:(n+1)*H]))] = n
	}
	check := func(what string, g, u, d []float32, width int, downScale float32) []int {
		var src []int
		for j := 0; j < width; j++ {
			n, ok := byRow[string(f32Bytes(g[j*H:(j+1)*H]))]
			if !ok {
				t.Fatalf("layer %d %s neuron %d: gate_proj row is no row of the dense gate_proj", i, what, j)
			}
			src = append(src, n)
			if !slices.Equal(u[j*H:(j+1)*H], du[n*H:(n+1)*H]) {
				t.Errorf("layer %d %s neuron %d: up_proj row differs from dense row %d", i, what, j, n)
			}
			for h := 0; h < H; h++ {
				if d[h*width+j] != downScale*dd[h*F+n] {
					t.Errorf("layer %d %s neuron %d: down_proj[%d] = %v, want %v × dense %v", i, what, j, h, d[h*width+j], downScale, dd[h*F+n])
					break
				}
			}
		}
		return src
	}
	S, I, K := c.SharedExpertIntermediateSize, c.MoEIntermediateSize, c.NumExpertsPerTok
	if c.HasSharedExpert() {
		shared = check("shared", tensorF32(t, out, c.SharedExpertLinear(i, hf.GateProj)+".weight"),
			tensorF32(t, out, c.SharedExpertLinear(i, hf.UpProj)+".weight"),
			tensorF32(t, out, c.SharedExpertLinear(i, hf.DownProj)+".weight"), S, 2)
		if g := tensorF32(t, out, c.SharedExpertGateLinear(i)+".weight"); slices.ContainsFunc(g, func(v float32) bool { return v != 0 }) {
			t.Errorf("layer %d: shared_expert_gate is not zero", i)
		}
	}
	for e := 0; e < c.NumExperts; e++ {
		experts = append(experts, check("expert", tensorF32(t, out, c.ExpertLinear(i, e, hf.GateProj)+".weight"),
			tensorF32(t, out, c.ExpertLinear(i, e, hf.UpProj)+".weight"),
			tensorF32(t, out, c.ExpertLinear(i, e, hf.DownProj)+".weight"), I, float32(K)))
	}
	// A partition: every dense neuron exactly once.
	all := slices.Clone(shared)
	for _, e := range experts {
		all = append(all, e...)
	}
	slices.Sort(all)
	want := make([]int, F)
	for n := range want {
		want[n] = n
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("layer %d: shared + routed neurons are not a partition of the FFN (-want +got):\n%s", i, diff)
	}
	return shared, experts
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		u := math.Float32bits(f)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}

// TestCarveLayout checks the config, the tensor set, that the experts
// partition every FFN with exactly copied weights (shared part exact:
// gate 0, down × 2; routed down × K), and that the summary's coverage
// figures are consistent.
func TestCarveLayout(t *testing.T) {
	tests := []struct {
		name       string
		co         CarveOptions
		o          UpcycleOptions
		E, K, I, S int
		moe        []int
	}{
		{name: "defaults", E: 12, K: 4, I: 16, S: 64, moe: []int{0, 1, 2}},
		{name: "three quarters", o: UpcycleOptions{SharedSize: 128, Experts: 8, TopK: 4}, E: 8, K: 4, I: 16, S: 128, moe: []int{0, 1, 2}},
		{name: "frequency, binary, mass router, layers 0 and 2", co: CarveOptions{SharedBy: CarveByFrequency, Features: CarveBinary, RouterTarget: CarveByMass},
			o: UpcycleOptions{ExpertSize: 32, SharedSize: 64, TopK: 2, MoELayers: []int{0, 2}}, E: 6, K: 2, I: 32, S: 64, moe: []int{0, 2}},
		{name: "contiguous baseline", co: CarveOptions{Method: CarveContiguous}, E: 12, K: 4, I: 16, S: 64, moe: []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dense, p, dir := carveTiny(t, tc.co, tc.o)
			out := checkLoadable(t, dir)
			c := out.Config
			got := []any{c.ModelType, c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.SharedExpertIntermediateSize, c.NormTopKProb}
			want := []any{hf.Qwen2MoE, tc.E, tc.K, tc.I, tc.S, true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (arch, E, K, I, S, norm_topk_prob) (-want +got):\n%s", diff)
			}
			if moe, _ := layerSplit(c); !slices.Equal(moe, tc.moe) {
				t.Errorf("MoE layers %v, want %v", moe, tc.moe)
			}
			if p.Summary.Exact || p.Summary.Carve == nil || p.Summary.Upcycle.Mode != Carve {
				t.Fatalf("summary: exact %v, carve %v, mode %v", p.Summary.Exact, p.Summary.Carve, p.Summary.Upcycle.Mode)
			}
			for _, i := range tc.moe {
				shared, experts := carvedNeurons(t, dense, out, i)
				if tc.co.Method == CarveContiguous {
					if shared[0] != 0 || shared[tc.S-1] != tc.S-1 || experts[1][0] != tc.S+tc.I {
						t.Errorf("layer %d: contiguous layout starts shared %v, expert 1 %v", i, shared[:2], experts[1][:2])
					}
				}
			}
			if tc.co.Method == CarveContiguous {
				return
			}
			if len(p.Summary.Carve.Layers) != len(tc.moe) {
				t.Fatalf("%d layer stats, want %d", len(p.Summary.Carve.Layers), len(tc.moe))
			}
			random := float64(tc.K) / float64(tc.E)
			for _, s := range p.Summary.Carve.Layers {
				if !(s.SharedMass > 0 && s.SharedMass < s.CoveredMass && s.CoveredMass < 1 &&
					s.RoutedCovered > random && s.RoutedCovered <= s.OracleRoutedCovered+1e-12 && s.OracleRoutedCovered < 1) {
					t.Errorf("layer %d stats inconsistent or no better than a random router (K/E = %.3f): %+v", s.Layer, random, s)
				}
			}
		})
	}
}

// TestCarveAllExpertsIsDense checks the combination rule: with K = E every
// token's chosen experts hold all its neurons, so with a router spread far
// below float32 resolution the carved model must compute the dense logits
// (≤ 1e-4 relative, the exact recipes' bound).
func TestCarveAllExpertsIsDense(t *testing.T) {
	in, _, dir := carveTiny(t, CarveOptions{RouterSpread: 1e-9}, UpcycleOptions{Experts: 12, TopK: 12})
	ref, _ := model.Load(in)
	cand := openModel(t, dir)
	m := parity(t, ref, cand, randomSeqs(in.Config.VocabSize))
	if m.MaxRelLogitDiff > exactTol {
		t.Errorf("top-%d of %d experts: max relative logit difference %.3g > %g", 12, 12, m.MaxRelLogitDiff, exactTol)
	}
	// And a real carving (top-4 of 12) is not the dense model.
	_, _, dir4 := carveTiny(t, CarveOptions{}, UpcycleOptions{})
	if m := parity(t, ref, openModel(t, dir4), randomSeqs(in.Config.VocabSize)); m.MaxRelLogitDiff < 1e-3 {
		t.Errorf("top-4 of 12 reproduces the dense logits (max relative difference %.3g): the routed experts are not sparse", m.MaxRelLogitDiff)
	}
}

// TestCarveSequentialStats re-measures, on the written checkpoint, the
// share of routed activation mass the router's choice covers, from the
// inputs the carved model itself gives each layer: it must equal the
// summary's, which was computed while carving layer by layer.
func TestCarveSequentialStats(t *testing.T) {
	calib := carveCalib(1024)
	dense, p, dir := carveTiny(t, CarveOptions{Calibration: calib}, UpcycleOptions{})
	checkCarveStats(t, dense, p, dir, calib)
}

// checkCarveStats is TestCarveSequentialStats for the carving p of dense,
// written to dir, from calibration windows calib.
func checkCarveStats(t *testing.T, dense *hf.Checkpoint, p *Plan, dir string, calib [][]int) {
	t.Helper()
	out := openCheckpoint(t, dir)
	m, err := model.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	c := out.Config
	E, K, H, F := c.NumExperts, c.NumExpertsPerTok, c.HiddenSize, dense.Config.IntermediateSize
	owner := map[int][]int{} // layer → dense neuron → expert (−1 shared)
	for _, i := range p.Summary.MoELayers {
		_, experts := carvedNeurons(t, dense, out, i)
		own := make([]int, F)
		for n := range own {
			own[n] = -1
		}
		for e, ns := range experts {
			for _, n := range ns {
				own[n] = e
			}
		}
		owner[i] = own
	}
	inputs := map[int][]float32{}
	chosen := map[int][]int32{}
	hooks := &model.Hooks{
		LinearInput: func(l *model.Linear, x []float32, rows int) {
			if l.Spec.Kind == hf.KindRouter {
				inputs[l.Spec.Layer] = slices.Clone(x[:rows*H])
			}
		},
		Routing: func(layer int, _ []float32, experts []int32, _ []float32) { chosen[layer] = slices.Clone(experts) },
	}
	if _, err := m.Logits(context.Background(), &model.Batch{Seqs: calib}, hooks); err != nil {
		t.Fatal(err)
	}
	dm, err := model.Load(dense)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Summary.Carve.Layers {
		li := s.Layer
		x := inputs[li]
		N := len(x) / H
		if N == 0 || len(chosen[li]) != N*K {
			t.Fatalf("layer %d: captured %d router inputs and %d choices", li, N, len(chosen[li]))
		}
		mlp := dm.Layers[li].MLP
		g, u := make([]float32, N*F), make([]float32, N*F)
		mlp.Gate.Forward(g, x, N)
		mlp.Up.Forward(u, x, N)
		down := widenAll(mlp.Down.W)
		var routed, got float64
		for tok := 0; tok < N; tok++ {
			mass := make([]float64, E)
			for n := 0; n < F; n++ {
				var dn float64
				for h := 0; h < H; h++ {
					dn += float64(down[h*F+n]) * float64(down[h*F+n])
				}
				gv := float64(g[tok*F+n])
				v := math.Abs(gv/(1+math.Exp(-gv))*float64(u[tok*F+n])) * math.Sqrt(dn)
				if e := owner[li][n]; e >= 0 {
					mass[e] += v
					routed += v
				}
			}
			for _, e := range chosen[li][tok*K : (tok+1)*K] {
				got += mass[e]
			}
		}
		t.Logf("layer %d: routed mass covered %.5f (written model) vs %.5f (summary)", li, got/routed, s.RoutedCovered)
		if d := math.Abs(got/routed - s.RoutedCovered); !(d <= 1e-5) {
			t.Errorf("layer %d: the written model's router covers %.4f of the routed mass on the calibration tokens, the summary says %.4f", li, got/routed, s.RoutedCovered)
		}
	}
}

// TestCarveDeterministic: the same inputs and seed give byte-identical
// output, whatever the number of threads.
func TestCarveDeterministic(t *testing.T) {
	_, _, a := carveTiny(t, CarveOptions{}, UpcycleOptions{Seed: 5})
	gemm.SetThreads(1)
	_, _, b := carveTiny(t, CarveOptions{}, UpcycleOptions{Seed: 5})
	gemm.SetThreads(0)
	if diff := cmp.Diff(readDir(t, a), readDir(t, b)); diff != "" {
		t.Errorf("two carvings with seed 5 (all threads, one thread) differ:\n%.2000s", diff)
	}
}

// TestCarveRefused checks the one-line errors of invalid carvings.
func TestCarveRefused(t *testing.T) {
	tiny := openCheckpoint(t, denseTiny(t))
	calib := carveCalib(tiny.Config.VocabSize)
	tests := []struct {
		name string
		o    UpcycleOptions
		want string
	}{
		{"no calibration", UpcycleOptions{}, "needs calibration text"},
		{"not a partition", UpcycleOptions{SharedSize: 64, Experts: 10, ExpertSize: 16, Carve: CarveOptions{Calibration: calib}}, "partitions the FFN"},
		{"sizes do not divide", UpcycleOptions{SharedSize: 60, ExpertSize: 16, Carve: CarveOptions{Calibration: calib}}, "not a multiple of --expert-size 16"},
		{"top-k above experts", UpcycleOptions{TopK: 13, Carve: CarveOptions{Calibration: calib}}, "--top-k 13 is more than --experts 12"},
		{"unnormalized", UpcycleOptions{NormTopKProb: ptr(false), Carve: CarveOptions{Calibration: calib}}, "norm_topk_prob=true"},
		{"shared too wide", UpcycleOptions{SharedSize: 256, Carve: CarveOptions{Calibration: calib}}, "leaves no neuron"},
		{"bad feature", UpcycleOptions{Carve: CarveOptions{Calibration: calib, Features: "pca"}}, `clustering features "pca"`},
		{"non-power-of-two top-k in bf16", UpcycleOptions{TopK: 3, DType: safetensors.BF16, Carve: CarveOptions{Calibration: calib}}, "not exact in bfloat16"},
		{"window too long", UpcycleOptions{Carve: CarveOptions{Calibration: corpus.RandomIDs(1, 600, 1024, 1)}}, "exceeds max_position_embeddings=512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Mode = Carve
			_, err := Upcycle(tiny, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestKthLargest(t *testing.T) {
	r := newRNG(1, "kth")
	for trial := 0; trial < 200; trial++ {
		n := 1 + intN(r, 50)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(intN(r, 10)) // many ties
		}
		sorted := slices.Clone(v)
		slices.Sort(sorted)
		slices.Reverse(sorted)
		k := 1 + intN(r, n)
		if got := kthLargest(slices.Clone(v), k); got != sorted[k-1] {
			t.Fatalf("kthLargest(%v, %d) = %v, want %v", v, k, got, sorted[k-1])
		}
	}
}

func TestBalancedAssign(t *testing.T) {
	r := newRNG(2, "assign")
	R, E, cap := 24, 4, 6
	dist := make([]float64, R*E)
	for i := range dist {
		dist[i] = uniform(r)
	}
	a := balancedAssign(dist, R, E, cap)
	before := 0.0
	for k, e := range a {
		before += dist[k*E+e]
	}
	improveSwaps(a, dist, R, E)
	fill := make([]int, E)
	after := 0.0
	for k, e := range a {
		fill[e]++
		after += dist[k*E+e]
	}
	if !slices.Equal(fill, []int{cap, cap, cap, cap}) || after > before {
		t.Errorf("cluster sizes %v (want %d each), total distance %.4f after swaps vs %.4f before", fill, cap, after, before)
	}
}

// TestCarveQuality carves the trained qwen2_dense_small at half of the FFN
// active per token (S = 256, 12 × 64, top-4) from 16 calibration windows
// and checks it against the protocol's evaluation text (first 8 windows):
// perplexity within 1.10× dense, and clearly better than the contiguous
// layout with a random router.
func TestCarveQuality(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := denseSmall(t)
	in := openCheckpoint(t, dir)
	calib := calibSeqs(t, dir, 16, 256)
	ref, err := model.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	seqs := textSeqs(t, dir, 8, 256)
	run := func(co CarveOptions) (ratio, kl float64) {
		p, err := Upcycle(in, UpcycleOptions{Mode: Carve, SharedSize: 256, Experts: 12, ExpertSize: 64, TopK: 4, Carve: co})
		if err != nil {
			t.Fatal(err)
		}
		m := parity(t, ref, openModel(t, writePlan(t, p, 0)), seqs)
		return m.PPLRatio, m.MeanKL
	}
	ratio, kl := run(CarveOptions{Calibration: calib})
	bRatio, bKL := run(CarveOptions{Method: CarveContiguous})
	t.Logf("half active: carve ppl ×%.4f KL %.4f; contiguous + random router ppl ×%.4f KL %.4f", ratio, kl, bRatio, bKL)
	if ratio > 1.10 || kl > 0.6*bKL {
		t.Errorf("carve at half active: ppl ×%.4f (want ≤ 1.10), KL %.4f (want ≤ 0.6 × the baseline's %.4f)", ratio, kl, bKL)
	}
}

// TestRefineTopK plants 6 groups of co-active neurons, scrambles a
// balanced assignment, and checks that refinement keeps the cluster sizes,
// never lowers the top-K mass (computed here by brute force) and recovers
// most of what the planted clustering achieves.
func TestRefineTopK(t *testing.T) {
	const E, I, K, N = 6, 8, 2, 600
	R := E * I
	r := &carveRun{F: R, E: E, I: I, K: K}
	rng := newRNG(4, "refine")
	c := make([]float32, N*R)
	for tok := 0; tok < N; tok++ {
		g1, g2 := intN(rng, E), intN(rng, E) // active groups of this token
		for n := 0; n < R; n++ {
			v := 0.05 * uniform(rng)
			if n/I == g1 || n/I == g2 {
				v += 1 + uniform(rng)
			}
			c[tok*R+n] = float32(v)
		}
	}
	routed := iota32(0, R)
	J := func(assign []int) float64 {
		var s float64
		for tok := 0; tok < N; tok++ {
			m := make([]float64, E)
			for n, e := range assign {
				m[e] += float64(c[tok*R+n])
			}
			slices.SortFunc(m, cmpDesc)
			for _, v := range m[:K] {
				s += v
			}
		}
		return s
	}
	planted := make([]int, R)
	for n := range planted {
		planted[n] = n / I
	}
	assign := slices.Clone(planted)
	for i := range assign { // a balanced scramble
		j := intN(rng, i+1)
		assign[i], assign[j] = assign[j], assign[i]
	}
	before := J(assign)
	swaps := r.refineTopK(c, N, routed, assign, 20)
	after := J(assign)
	fill := make([]int, E)
	for _, e := range assign {
		fill[e]++
	}
	t.Logf("%d swaps: top-%d mass %.1f → %.1f (planted %.1f)", swaps, K, before, after, J(planted))
	if !slices.Equal(fill, []int{I, I, I, I, I, I}) {
		t.Errorf("cluster sizes %v, want %d each", fill, I)
	}
	if after < before || after < before+0.8*(J(planted)-before) {
		t.Errorf("refinement: top-K mass %.1f → %.1f, the planted clusters reach %.1f", before, after, J(planted))
	}
}

// BenchmarkCarve measures carving qwen2_dense_small (S = 256, 12 × 64,
// top-4) from 16 calibration windows of 256 tokens: calibration tokens
// per second through the whole recipe (forward passes, statistics,
// clustering, refinement, router).
func BenchmarkCarve(b *testing.B) {
	dir := fixturetest.Dir(b, "models/qwen2_dense_small")
	in, err := hf.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	calib := corpus.RandomIDs(16, 256, in.Config.VocabSize, 1)
	for _, refine := range []int{-1, 4} {
		b.Run(map[int]string{-1: "refine=0", 4: "refine=4"}[refine], func(b *testing.B) {
			for b.Loop() {
				if _, err := Upcycle(in, UpcycleOptions{Mode: Carve, Carve: CarveOptions{Calibration: calib, RefineSweeps: refine}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(16*256)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
