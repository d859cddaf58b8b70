package convert

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/model"
)

// TestCarveQwen3 carves the qwen3 test checkpoint (qwen2_dense_tiny's
// weights, FFN 256) into qwen3_moe, which has no shared expert: every
// neuron goes to one of the E routed experts (defaults 16 × 16, top-8:
// half the FFN), copied exactly with down_proj × K and norm_topk_prob true;
// the router's choice beats a random one and the summary's coverage equals
// the written model's; with K = E the carved model computes the dense
// logits (≤ 1e-4 relative, the same expert choices being all of them).
func TestCarveQwen3(t *testing.T) {
	dense := openCheckpoint(t, qwen3FromDense(t, nil))
	vocab := dense.Config.VocabSize
	calib := carveCalib(vocab)
	ref, err := model.Load(dense)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       UpcycleOptions
		E, K, I int
	}{
		{"defaults", UpcycleOptions{}, 16, 8, 16},
		{"8 × 32 top-2, layers 0 and 2", UpcycleOptions{ExpertSize: 32, TopK: 2, MoELayers: []int{0, 2}}, 8, 2, 32},
		{"contiguous baseline", UpcycleOptions{Carve: CarveOptions{Method: CarveContiguous}}, 16, 8, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Mode = Carve
			if o.Carve.Method != CarveContiguous {
				o.Carve.Calibration = calib
			}
			p, err := Upcycle(dense, o)
			if err != nil {
				t.Fatal(err)
			}
			dir := writePlan(t, p, 0)
			out := checkLoadable(t, dir)
			c := out.Config
			got := []any{c.ModelType, c.HasSharedExpert(), c.NumExperts, c.NumExpertsPerTok, c.MoEIntermediateSize, c.NormTopKProb, p.Summary.SharedSize}
			want := []any{hf.Qwen3MoE, false, tc.E, tc.K, tc.I, true, 0}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (arch, shared expert, E, K, I, norm_topk_prob, summary S) (-want +got):\n%s", diff)
			}
			moe, _ := layerSplit(c)
			for _, i := range moe {
				_, experts := carvedNeurons(t, dense, out, i) // a partition, exact copies, down × K
				if o.Carve.Method == CarveContiguous && (experts[0][0] != 0 || experts[1][0] != tc.I) {
					t.Errorf("layer %d: contiguous experts start at %d, %d", i, experts[0][0], experts[1][0])
				}
			}
			if p.Summary.Carve.SharedBy != "" {
				t.Errorf("summary says the shared neurons were ranked by %q, but there is no shared expert", p.Summary.Carve.SharedBy)
			}
			if !strings.Contains(strings.Join(p.Summary.Notes, "\n"), "no shared expert") {
				t.Errorf("notes %q do not say there is no shared expert", p.Summary.Notes)
			}
			if o.Carve.Method == CarveContiguous {
				return
			}
			random := float64(tc.K) / float64(tc.E)
			for _, s := range p.Summary.Carve.Layers {
				if s.SharedMass != 0 || math.Abs(s.CoveredMass-s.RoutedCovered) > 1e-12 || !(s.RoutedCovered > random) || s.RoutedCovered > s.OracleRoutedCovered+1e-12 {
					t.Errorf("layer %d: stats %+v: want no shared mass, covered = routed covered, above a random router's %.3f, at most the oracle's", s.Layer, s, random)
				}
			}
			checkCarveStats(t, dense, p, dir, calib)
			if m := parity(t, ref, openModel(t, dir), randomSeqs(vocab)); m.MaxRelLogitDiff < 1e-3 {
				t.Errorf("top-%d of %d reproduces the dense logits (max relative difference %.3g): the experts are not sparse", tc.K, tc.E, m.MaxRelLogitDiff)
			}
		})
	}
	t.Run("all experts", func(t *testing.T) {
		p, err := Upcycle(dense, UpcycleOptions{Mode: Carve, TopK: 16, Carve: CarveOptions{Calibration: calib, RouterSpread: 1e-9}})
		if err != nil {
			t.Fatal(err)
		}
		m := parity(t, ref, openModel(t, writePlan(t, p, 0)), randomSeqs(vocab))
		t.Logf("top-16 of 16: max rel Δlogit %.3g, top-1 %.4f", m.MaxRelLogitDiff, m.Top1Agreement)
		if m.MaxRelLogitDiff > exactTol || m.Top1Agreement != 1 {
			t.Errorf("top-16 of 16 experts: max relative logit difference %.3g (want ≤ %g), top-1 agreement %.4f", m.MaxRelLogitDiff, exactTol, m.Top1Agreement)
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			o    UpcycleOptions
			want string
		}{
			{UpcycleOptions{SharedSize: 64}, "--shared-size 64, but qwen3_moe has no shared expert"},
			{UpcycleOptions{Experts: 10}, "qwen3_moe has no shared expert: --experts 10 × --expert-size 16 = 160, want intermediate_size 256 (e.g. --experts 16"},
			{UpcycleOptions{ExpertSize: 24}, "intermediate_size 256 is not a multiple of --expert-size 24"},
			{UpcycleOptions{TopK: 17}, "--top-k 17 is more than --experts 16"},
		} {
			tc.o.Mode, tc.o.Carve.Calibration = Carve, calib
			_, err := Upcycle(dense, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%+v: error %q, want one line containing %q", tc.o, err, tc.want)
			}
		}
	})
}

// TestCarveQwen3Quality: testdata has no trained qwen3 model, so this
// carves the trained qwen2_dense_small's weights written as a qwen3
// checkpoint (qwen3From: q/k/v biases dropped, q/k norm weights
// 1 + 0.3·sin, so attention differs from the trained model's but the FFNs
// are trained) at half of the FFN active (16 × 64, top-8, no shared
// expert) from 16 calibration windows, and checks it on the protocol's
// evaluation text (first 8 windows) against the same shape cut in order
// with a random router: lower perplexity and at most 0.6× its KL.
func TestCarveQwen3Quality(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	small := denseSmall(t)
	dense := openCheckpoint(t, qwen3From(t, small, nil))
	calib := calibSeqs(t, small, 16, 256)
	ref, err := model.Load(dense)
	if err != nil {
		t.Fatal(err)
	}
	seqs := textSeqs(t, small, 8, 256)
	run := func(co CarveOptions) (ratio, kl float64) {
		p, err := Upcycle(dense, UpcycleOptions{Mode: Carve, Experts: 16, ExpertSize: 64, TopK: 8, Carve: co})
		if err != nil {
			t.Fatal(err)
		}
		m := parity(t, ref, openModel(t, writePlan(t, p, 0)), seqs)
		return m.PPLRatio, m.MeanKL
	}
	ratio, kl := run(CarveOptions{Calibration: calib})
	bRatio, bKL := run(CarveOptions{Method: CarveContiguous})
	t.Logf("half active, no shared expert: carve ppl ×%.4f KL %.4f; contiguous + random router ppl ×%.4f KL %.4f", ratio, kl, bRatio, bKL)
	if ratio >= bRatio || kl > 0.6*bKL {
		t.Errorf("qwen3 carve at half active: ppl ×%.4f, KL %.4f; want below the baseline's ppl ×%.4f and at most 0.6 × its KL %.4f", ratio, kl, bRatio, bKL)
	}
}
