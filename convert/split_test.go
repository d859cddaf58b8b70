package convert

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

// TestSplitExact splits the MoE fixtures and checks that the output's
// logits equal the input's within exactTol relative and that each token
// selects all g pieces of an expert or none.
func TestSplitExact(t *testing.T) {
	tests := []struct {
		fixture string // under testdata/
		factor  int
		E, K, I int // after the split
	}{
		{"fixtures/mixtral_tiny", 2, 16, 4, 48},
		{"fixtures/mixtral_tiny", 4, 32, 8, 24},
		{"fixtures/mixtral_tiny", 8, 64, 16, 12},
		{"fixtures/qwen2_moe_tiny", 2, 32, 8, 16},
		{"fixtures/qwen2_moe_tiny_sharded", 2, 32, 8, 16}, // bf16: ×2 is exact
		{"models/qwen2_moe_small", 4, 64, 16, 32},         // trained, bf16
	}
	for _, tc := range tests {
		t.Run(tc.fixture+"/"+string(rune('0'+tc.factor)), func(t *testing.T) {
			src := fixturetest.Dir(t, tc.fixture)
			if strings.HasPrefix(tc.fixture, "fixtures/") {
				src = filepath.Join(src, "model")
			}
			in := openCheckpoint(t, src)
			p, err := Split(in, SplitOptions{Factor: tc.factor})
			if err != nil {
				t.Fatal(err)
			}
			c := p.Config
			if diff := cmp.Diff([]int{tc.E, tc.K, tc.I}, []int{c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize}); diff != "" {
				t.Fatalf("experts, top-k, width (-want +got):\n%s", diff)
			}
			if c.ModelType != in.Config.ModelType || c.NormTopKProb != in.Config.NormTopKProb || c.SharedExpertIntermediateSize != in.Config.SharedExpertIntermediateSize {
				t.Errorf("split changed the architecture, norm_topk_prob or the shared expert")
			}
			dir := writePlan(t, p, 0)
			checkLoadable(t, dir)
			ref, cand := openModel(t, src), openModel(t, dir)
			seqs := randomSeqs(ref.Config.VocabSize)
			if strings.HasPrefix(tc.fixture, "models/") {
				seqs = textSeqs(t, src, 3, 64)
			}
			m := parity(t, ref, cand, seqs)
			t.Logf("max rel logit diff %.3g (abs %.3g), top-1 %.4f", m.MaxRelLogitDiff, m.MaxAbsLogitDiff, m.Top1Agreement)
			if !(m.MaxRelLogitDiff <= exactTol) {
				t.Errorf("max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
			}
			if m.Top1Agreement != 1 {
				t.Errorf("top-1 agreement %v, want 1", m.Top1Agreement)
			}
			if n := checkGroups(t, cand, seqs, tc.factor); n == 0 {
				t.Errorf("no routed tokens seen")
			}
			if s := p.Summary; s.Split.Factor != tc.factor || s.Split.ExpertsBefore*tc.factor != tc.E || s.ParamsAfter.Total < s.ParamsBefore.Total {
				t.Errorf("summary %+v / %+v", s, s.Split)
			}
		})
	}
}

// TestSplitRefusals checks the refused splits and their proposals.
func TestSplitRefusals(t *testing.T) {
	tests := []struct {
		fixture string
		opts    SplitOptions
		want    []string
	}{
		{"fixtures/mixtral_tiny", SplitOptions{Factor: 5}, []string{"expert width 96 is not a multiple of --factor 5", "e.g. 3, 4, 6, 8"}},
		{"fixtures/mixtral_tiny", SplitOptions{Factor: 1}, []string{"at least 2"}},
		{"fixtures/mixtral_tiny", SplitOptions{Factor: 3, DType: safetensors.BF16}, []string{"split by 3 multiplies down_proj by 3", "not exact in bfloat16", "--dtype f32", "2, 4, 8"}},
		{"fixtures/qwen2_moe_tiny", SplitOptions{Factor: 3}, []string{"expert width 32 is not a multiple of --factor 3", "e.g. 2, 4, 8"}},
		{"fixtures/qwen2_dense_tiny", SplitOptions{Factor: 2}, []string{"needs a mixtral, qwen2_moe or qwen3_moe checkpoint", "convert upcycle"}},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			_, err := Split(openCheckpoint(t, filepath.Join(fixturetest.Dir(t, tc.fixture), "model")), tc.opts)
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestSplitDTypeF32 shows the way out of the bf16 refusal: a factor of 3
// written in f32 is exact.
func TestSplitDTypeF32(t *testing.T) {
	src := filepath.Join(fixturetest.Dir(t, "fixtures/mixtral_tiny"), "model")
	p, err := Split(openCheckpoint(t, src), SplitOptions{Factor: 3, DType: safetensors.F32})
	if err != nil {
		t.Fatal(err)
	}
	dir := writePlan(t, p, 0)
	checkLoadable(t, dir)
	m := parity(t, openModel(t, src), openModel(t, dir), randomSeqs(1024))
	t.Logf("factor 3, f32: max rel logit diff %.3g", m.MaxRelLogitDiff)
	if !(m.MaxRelLogitDiff <= exactTol) {
		t.Errorf("max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
	}
}

// TestSplitFusedInput splits a checkpoint whose experts are stored in the
// fused layout (experts.gate_up_proj [E, 2I, H], experts.down_proj
// [E, H, I]); the output is written per expert and stays exact.
func TestSplitFusedInput(t *testing.T) {
	src := filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model")
	in := openCheckpoint(t, src)
	c := in.Config
	dir := t.TempDir()
	if _, err := hf.CopyExtraFiles(src, dir); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	var tensors []*safetensors.Tensor
	fused := map[string]bool{}
	for _, i := range c.MoELayers() {
		gateUp, down := c.FusedExpertTensors(i)
		var gu, dn []byte
		for e := 0; e < c.NumExperts; e++ {
			for _, p := range hf.FFNProjs {
				n := c.ExpertLinear(i, e, p) + ".weight"
				fused[n] = true
				tt, err := in.Tensor(n)
				if err != nil {
					t.Fatal(err)
				}
				if p == hf.DownProj {
					dn = append(dn, tt.Bytes()...)
				} else {
					gu = append(gu, tt.Bytes()...) // gate rows, then up rows
				}
			}
		}
		E, I, H := c.NumExperts, c.MoEIntermediateSize, c.HiddenSize
		a, err := safetensors.NewTensor(gateUp, safetensors.F32, []int{E, 2 * I, H}, gu)
		if err != nil {
			t.Fatal(err)
		}
		b, err := safetensors.NewTensor(down, safetensors.F32, []int{E, H, I}, dn)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, a, b)
	}
	for _, n := range in.Weights.Names() {
		if !fused[n] {
			tt, _ := in.Weights.Tensor(n)
			tensors = append(tensors, tt)
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFile), tensors, nil); err != nil {
		t.Fatal(err)
	}
	p, err := Split(openCheckpoint(t, dir), SplitOptions{Factor: 2})
	if err != nil {
		t.Fatal(err)
	}
	out := writePlan(t, p, 0)
	checkLoadable(t, out)
	m := parity(t, openModel(t, src), openModel(t, out), randomSeqs(c.VocabSize))
	t.Logf("fused input split by 2: max rel logit diff %.3g", m.MaxRelLogitDiff)
	if !(m.MaxRelLogitDiff <= exactTol) {
		t.Errorf("max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
	}
}

// TestUpcycleThenSplit chains the recipes: the dense model upcycled with
// only layer 1 sparse, then split by 2 (dense layers copied), still computes
// the dense model's logits.
func TestUpcycleThenSplit(t *testing.T) {
	src := denseTiny(t)
	p, err := Upcycle(openCheckpoint(t, src), UpcycleOptions{Mode: HybridExact, MoELayers: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	mid := writePlan(t, p, 0)
	q, err := Split(openCheckpoint(t, mid), SplitOptions{Factor: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q.Summary.DenseLayers, []int{0, 2}) || q.Config.NumExperts != 16 || q.Config.NumExpertsPerTok != 4 {
		t.Fatalf("split of the upcycled model: dense layers %v, E=%d, K=%d", q.Summary.DenseLayers, q.Config.NumExperts, q.Config.NumExpertsPerTok)
	}
	out := writePlan(t, q, 0)
	checkLoadable(t, out)
	cand := openModel(t, out)
	seqs := randomSeqs(1024)
	m := parity(t, openModel(t, src), cand, seqs)
	t.Logf("dense → hybrid-exact (layer 1) → split ×2: max rel logit diff %.3g", m.MaxRelLogitDiff)
	if !(m.MaxRelLogitDiff <= exactTol) {
		t.Errorf("max relative logit difference %.3g > %g", m.MaxRelLogitDiff, exactTol)
	}
	// Groups are the 2·2 = 4 adjacent experts of one replica.
	checkGroups(t, cand, seqs, 4)
}
