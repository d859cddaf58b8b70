package verify

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/corpus"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// loadModel loads the checkpoint in testdata/rel/model. The checkpoint
// stays open until the test ends.
func loadModel(t *testing.T, rel string) *model.Model {
	t.Helper()
	m, err := model.Open(filepath.Join(fixturetest.Dir(t, rel), "model"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// scaleLinear replaces l's weights by a float32 copy multiplied by f.
func scaleLinear(l *model.Linear, f float32) {
	n, k := l.Out(), l.In()
	w := make([]float32, n*k)
	l.W.Widen(w, k, 0, n, 0, k)
	for i := range w {
		w[i] *= f
	}
	l.W = gemm.F32{Data: w, N: n, K: k}
}

// mostRouted returns the expert of an MoE layer that the model selects for
// the most tokens of seqs, and that count.
func mostRouted(t *testing.T, m *model.Model, layer int, seqs [][]int) (expert, tokens int) {
	t.Helper()
	counts := make([]int, len(m.Layers[layer].MoE.Experts))
	hooks := &model.Hooks{Routing: func(l int, _ []float32, experts []int32, _ []float32) {
		if l == layer {
			for _, e := range experts {
				counts[e]++
			}
		}
	}}
	if _, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, hooks); err != nil {
		t.Fatal(err)
	}
	for e, c := range counts {
		if c > counts[expert] {
			expert = e
		}
	}
	return expert, counts[expert]
}

// TestRunIdentical: a model against a second load of itself agrees exactly
// (tolerance 0: the same kernels on the same inputs), in logits, hidden
// states and expert selection.
func TestRunIdentical(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	cand := loadModel(t, "fixtures/qwen2_moe_tiny")
	seqs := corpus.RandomIDs(3, 40, ref.Config.VocabSize, 1)
	res, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 2, PerLayer: true})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics
	if m.Positions != 120 || m.MaxAbsLogitDiff != 0 || m.MeanKL != 0 || m.Top1Agreement != 1 || m.PPLRatio != 1 {
		t.Errorf("metrics of identical models: %+v", m)
	}
	want := make([]LayerResult, 3)
	for i := range want {
		want[i] = LayerResult{Layer: i, Routing: &Routing{Experts: 16, TopK: 4, SetAgreement: 1, MeanOverlap: 1}}
	}
	if diff := cmp.Diff(want, res.Layers); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	rep, err := NewReport(Inputs{}, res, mustPreset(t, "exact"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pass || rep.Divergence == nil || rep.Divergence.Layer != -1 {
		t.Errorf("identical models: pass=%v failed=%v divergence=%+v", rep.Pass, rep.Failed, rep.Divergence)
	}
}

// TestRunCorruptedExpert: one routed expert's down_proj scaled by 1.5 in
// layer 1 fails --expect exact, and the per-layer comparison points at
// layer 1 with layer 0 untouched.
func TestRunCorruptedExpert(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	cand := loadModel(t, "fixtures/qwen2_moe_tiny")
	seqs := corpus.RandomIDs(4, 32, ref.Config.VocabSize, 2)
	e, n := mostRouted(t, ref, 1, seqs)
	if n == 0 {
		t.Fatal("no token routed in layer 1")
	}
	scaleLinear(cand.Layers[1].MoE.Experts[e].Down, 1.5)

	res, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 3, PerLayer: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := NewReport(Inputs{}, res, mustPreset(t, "exact"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pass || !cmp.Equal(rep.Failed, []string{NameMaxRelLogit}) {
		t.Errorf("corrupted expert: pass=%v failed=%v, want failed [max_rel_logit]", rep.Pass, rep.Failed)
	}
	if rep.Divergence.Layer != 1 {
		t.Errorf("first divergent layer %d, want 1 (layers %+v)", rep.Divergence.Layer, res.Layers)
	}
	l := res.Layers
	// Layer 0 runs the same weights on the same inputs: error exactly 0.
	if l[0].RelError != 0 || l[0].MaxAbsDiff != 0 {
		t.Errorf("layer 0 error %g, want 0", l[0].RelError)
	}
	// The scaled expert adds 0.5·(its output) for the tokens it serves.
	if l[1].RelError < 1e-3 {
		t.Errorf("layer 1 error %g, want ≥ 1e-3", l[1].RelError)
	}
	// Layers 0 and 1 route from unchanged inputs.
	for _, i := range []int{0, 1} {
		if l[i].Routing == nil || l[i].Routing.SetAgreement != 1 {
			t.Errorf("layer %d routing %+v, want full agreement", i, l[i].Routing)
		}
	}
	if res.Metrics.MaxRelLogitDiff < 1e-3 {
		t.Errorf("max rel logit diff %g, want ≥ 1e-3", res.Metrics.MaxRelLogitDiff)
	}
}

// TestRunBF16VsF32: the bf16 copy of the fixture fails --expect exact but
// passes a loose KL bound. Measured (2 reference sequences × 24 tokens):
// max rel logit diff 9.6e-3, mean KL 2.5e-5.
func TestRunBF16VsF32(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	cand := loadModel(t, "fixtures/qwen2_moe_tiny_sharded")
	seqs, err := corpus.ReadIDs(filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "reference.safetensors"), corpus.AnyIDs)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 4, PerLayer: true})
	if err != nil {
		t.Fatal(err)
	}
	th := mustPreset(t, "exact").Override(Thresholds{MaxKL: ptr(1e-3)})
	rep, err := NewReport(Inputs{}, res, th)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(rep.Failed, []string{NameMaxRelLogit}) {
		t.Errorf("bf16 vs f32: failed %v, want [max_rel_logit] only; metrics %+v", rep.Failed, res.Metrics)
	}
	// Rounding the weights to bf16 perturbs every layer, the first included.
	if rep.Divergence.Layer != 0 {
		t.Errorf("first divergent layer %d, want 0", rep.Divergence.Layer)
	}
}

// TestRunBatching: batch size changes nothing but the grouping (metrics
// equal within 1e-5 relative: GEMM shapes differ, so float32 rounding may),
// and Compare reports what Run does.
func TestRunBatching(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	cand := loadModel(t, "fixtures/qwen2_moe_tiny")
	scaleLinear(cand.Layers[2].Attn.O, 1.01)
	seqs := corpus.RandomIDs(5, 24, ref.Config.VocabSize, 3)
	var done []int
	one, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 1, PerLayer: true, Progress: func(d, total int) {
		if total != 5 {
			t.Errorf("progress total %d, want 5", total)
		}
		done = append(done, d)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(done, []int{1, 2, 3, 4, 5}) {
		t.Errorf("progress %v", done)
	}
	all, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 5, PerLayer: true})
	if err != nil {
		t.Fatal(err)
	}
	// Batching changes the products' row counts and so the GEMM kernels'
	// summation order: logits move by ~1e-6 relative, which moves these
	// small differences of logits by up to ~1e-4 of their value. A batching
	// bug (a dropped or misaligned sequence) moves them by orders of magnitude.
	opt := cmpopts.EquateApprox(1e-3, 1e-7)
	if diff := cmp.Diff(one, all, opt); diff != "" {
		t.Errorf("batch 1 vs 5 (-1 +5):\n%s", diff)
	}
	m, err := Compare(context.Background(), ref, cand, seqs, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all.Metrics, m, opt); diff != "" {
		t.Errorf("Compare vs Run (-run +compare):\n%s", diff)
	}
	if one.Layers[1].RelError != 0 || one.Layers[2].RelError == 0 {
		t.Errorf("only layer 2 was changed: %+v", one.Layers)
	}
}

func TestCheckCompatible(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	with := func(f func(c *hf.Config)) *model.Model {
		m := *ref
		m.Config = ref.Config.Clone()
		f(m.Config)
		return &m
	}
	tests := []struct {
		name     string
		cand     *model.Model
		perLayer bool
		ok       bool
	}{
		{"same", ref, true, true},
		{"vocab", with(func(c *hf.Config) { c.VocabSize = 1000 }), false, false},
		{"hidden without per-layer", with(func(c *hf.Config) { c.HiddenSize = 32 }), false, true},
		{"hidden with per-layer", with(func(c *hf.Config) { c.HiddenSize = 32 }), true, false},
	}
	for _, tc := range tests {
		if err := CheckCompatible(ref, tc.cand, tc.perLayer); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	fewer := *ref
	fewer.Layers = ref.Layers[:2]
	if err := CheckCompatible(ref, &fewer, true); err == nil {
		t.Error("different layer counts accepted for --per-layer")
	}
	if _, err := Run(context.Background(), ref, with(func(c *hf.Config) { c.VocabSize = 1000 }), [][]int{{1, 2}}, Options{}); err == nil {
		t.Error("Run accepted different vocabularies")
	}
}

// TestLayerCollectorRouting checks set agreement and overlap on choices
// made up by hand (the order within a token's top-k does not matter).
func TestLayerCollectorRouting(t *testing.T) {
	moe := func(e, k int) *model.Layer {
		return &model.Layer{MoE: &model.MoE{Experts: make([]*model.FFN, e), TopK: k}}
	}
	ref := &model.Model{Layers: []*model.Layer{moe(8, 2), moe(8, 2), moe(8, 2), {}}}
	cand := &model.Model{Layers: []*model.Layer{moe(8, 2), moe(16, 2), moe(8, 4), moe(8, 2)}}
	c := newLayerCollector(ref, cand)
	r, k := c.refHooks(), c.candHooks()
	// Three tokens: same set reordered, one in common, none in common.
	r.Routing(0, nil, []int32{1, 2, 3, 4, 5, 6}, nil)
	k.Routing(0, nil, []int32{2, 1, 3, 7, 0, 7}, nil)
	// A second batch: equal.
	r.Routing(0, nil, []int32{0, 1}, nil)
	k.Routing(0, nil, []int32{0, 1}, nil)
	h := []float32{1, -4}
	r.Hidden(1, h)
	k.Hidden(1, []float32{1.5, -4})
	got := c.results()
	want := []LayerResult{
		{Layer: 0, MaxAbsDiff: 0.5, RelError: 0.125, Routing: &Routing{Experts: 8, TopK: 2, SetAgreement: 0.5, MeanOverlap: 5.0 / 8}},
		{Layer: 1}, {Layer: 2}, {Layer: 3}, // different experts, top-k, or a dense layer: not compared
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func mustPreset(t *testing.T, name string) Thresholds {
	t.Helper()
	p, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAccumulatorNaN: a NaN logit is an error naming the side and place.
func TestAccumulatorNaN(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		ref, cand []float32
		want      string
	}{
		{[]float32{0, 1, 2, 3}, []float32{0, 1, 2, nan}, "candidate logits are NaN at position 1, vocabulary entry 1"},
		{[]float32{nan, 1, 2, 3}, []float32{0, 1, 2, 3}, "reference logits are NaN at position 0, vocabulary entry 0"},
	}
	for _, tc := range tests {
		err := NewAccumulator(2).Add(tc.ref, tc.cand, []int{0, 1})
		if err == nil || err.Error() != tc.want {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// TestRunLayerMajorEqualsBatchMajor checks that Run without PerLayer (one
// layer-major pass per model, logits compared a chunk at a time) measures
// exactly what the batch-major pass with PerLayer does on the same
// batches, also when the logits cap makes chunks of one window.
func TestRunLayerMajorEqualsBatchMajor(t *testing.T) {
	ref := loadModel(t, "fixtures/qwen2_moe_tiny")
	cand := loadModel(t, "fixtures/qwen2_moe_tiny")
	scaleLinear(cand.Layers[1].MoE.Experts[0].Up, 1.02) // a heap copy: advice must keep it
	seqs := corpus.RandomIDs(5, 20, ref.Config.VocabSize, 4)
	for _, batch := range []int{1, 3} {
		bm, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: batch, PerLayer: true})
		if err != nil {
			t.Fatal(err)
		}
		var steps []int
		lm, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: batch, Progress: func(d, total int) {
			if total != 2*(len(ref.Layers)+1) {
				t.Errorf("progress total %d", total)
			}
			steps = append(steps, d)
		}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(bm.Metrics, lm.Metrics); diff != "" {
			t.Errorf("batch %d: layer-major vs batch-major (-batch +layer):\n%s", batch, diff)
		}
		if len(steps) != 2*(len(ref.Layers)+1) || steps[len(steps)-1] != len(steps) {
			t.Errorf("progress %v", steps)
		}
		if lm.Metrics.MaxRelLogitDiff == 0 {
			t.Errorf("the changed expert made no difference")
		}
	}
	one, err := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 1, logitsBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	bm, _ := Run(context.Background(), ref, cand, seqs, Options{BatchSize: 1, PerLayer: true})
	if diff := cmp.Diff(bm.Metrics, one.Metrics); diff != "" {
		t.Errorf("chunks of one window (-batch +layer):\n%s", diff)
	}
}

// TestPerplexityLayerMajor checks Perplexity against the batch-major sum of
// next-token NLLs on the same batches, exactly.
func TestPerplexityLayerMajor(t *testing.T) {
	m := loadModel(t, "fixtures/qwen2_moe_tiny")
	seqs := corpus.RandomIDs(6, 20, m.Config.VocabSize, 5)
	V := m.Config.VocabSize
	for _, batch := range []int{1, 4} {
		var sum float64
		n := 0
		for i := 0; i < len(seqs); i += batch {
			b := seqs[i:min(i+batch, len(seqs))]
			lg, err := m.Logits(context.Background(), &model.Batch{Seqs: b}, nil)
			if err != nil {
				t.Fatal(err)
			}
			row := 0
			for _, s := range b {
				for _, v := range model.NextTokenNLL(lg[row*V:(row+len(s))*V], V, s) {
					sum += v
					n++
				}
				row += len(s)
			}
		}
		ppl, got, err := Perplexity(context.Background(), m, seqs, batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != n || ppl != expMean(sum, n) {
			t.Errorf("batch %d: ppl %v over %d tokens, batch-major %v over %d", batch, ppl, got, expMean(sum, n), n)
		}
	}
}
