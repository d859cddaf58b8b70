package model_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
)

func softmaxT(logits []float32, t float64) []float64 {
	p := make([]float64, len(logits))
	var sum float64
	for i, l := range logits {
		p[i] = math.Exp(float64(l) / t)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// drawMany returns the empirical distribution of n draws.
func drawMany(opt model.SamplingOptions, logits []float32, n int) []float64 {
	s := model.NewSampler(opt)
	freq := make([]float64, len(logits))
	for i := 0; i < n; i++ {
		l := append([]float32(nil), logits...)
		freq[s.Sample(l)] += 1 / float64(n)
	}
	return freq
}

func TestSamplerDistribution(t *testing.T) {
	logits := []float32{2, 1, 0.5, 0, -1, -3}
	const n = 60000
	for _, temp := range []float64{0.7, 1, 1.5} {
		got := drawMany(model.SamplingOptions{DoSample: true, Temperature: temp, Seed: 1}, logits, n)
		want := softmaxT(logits, temp)
		for i := range want {
			// 5 standard deviations of a binomial frequency
			if tol := 5 * math.Sqrt(want[i]*(1-want[i])/n); math.Abs(got[i]-want[i]) > tol+1e-9 {
				t.Errorf("T=%v token %d: frequency %.4f, softmax %.4f (tolerance %.4f)", temp, i, got[i], want[i], tol)
			}
		}
	}
	// top-k 2: only the two best, in proportion of their softmax
	got := drawMany(model.SamplingOptions{DoSample: true, Temperature: 1, TopK: 2, Seed: 2}, logits, n)
	w := softmaxT(logits[:2], 1)
	for i, g := range got {
		want := 0.0
		if i < 2 {
			want = w[i]
		}
		if math.Abs(g-want) > 0.01 {
			t.Errorf("top-k 2 token %d: frequency %.4f, want %.4f", i, g, want)
		}
	}
	// top-p 0.8: softmax(logits) = .57 .21 .13 .08 ...: the three best (0.91 ≥ 0.8)
	got = drawMany(model.SamplingOptions{DoSample: true, Temperature: 1, TopP: 0.8, Seed: 3}, logits, n)
	w = softmaxT(logits[:3], 1)
	for i, g := range got {
		want := 0.0
		if i < 3 {
			want = w[i]
		}
		if math.Abs(g-want) > 0.01 {
			t.Errorf("top-p 0.8 token %d: frequency %.4f, want %.4f", i, g, want)
		}
	}
}

func TestSamplerGreedyAndSeed(t *testing.T) {
	logits := []float32{0.1, 3, 2.5, -2}
	for _, opt := range []model.SamplingOptions{
		{}, {DoSample: false, Temperature: 0.7}, {DoSample: true, Temperature: 0}, {DoSample: true, Temperature: 1, TopK: 1},
	} {
		if got := model.NewSampler(opt).Sample(append([]float32(nil), logits...)); got != 1 {
			t.Errorf("%+v: picked %d, want the argmax 1", opt, got)
		}
	}
	draws := func(seed uint64) []int {
		s := model.NewSampler(model.SamplingOptions{DoSample: true, Temperature: 1, Seed: seed})
		var out []int
		for i := 0; i < 50; i++ {
			out = append(out, s.Sample(append([]float32(nil), logits...)))
		}
		return out
	}
	if d := cmp.Diff(draws(7), draws(7)); d != "" {
		t.Errorf("same seed, different draws:\n%s", d)
	}
	if cmp.Equal(draws(7), draws(8)) {
		t.Error("seeds 7 and 8 drew the same 50 tokens")
	}
}

// TestRepetitionPenalty: logits of seen tokens are divided (positive) or
// multiplied (negative) by the penalty, as transformers does.
func TestRepetitionPenalty(t *testing.T) {
	s := model.NewSampler(model.SamplingOptions{RepetitionPenalty: 2})
	s.Observe(0, 2)
	logits := []float32{4, 3, -1, 1}
	if got := s.Sample(logits); got != 1 {
		t.Errorf("picked %d, want 1", got)
	}
	if d := cmp.Diff([]float32{2, 3, -2, 1}, logits); d != "" {
		t.Errorf("penalized logits (-want +got):\n%s", d)
	}
}

// TestStepLogitsBatched: one batched step over sequences of different
// lengths, each with its own cache, gives each sequence the logits it gets
// alone, prompt and decode steps alike, on every architecture.
func TestStepLogitsBatched(t *testing.T) {
	for _, name := range []string{"qwen2_moe_tiny", "mixtral_tiny", "qwen2_dense_tiny"} {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/"+name), "model"))
			prompts := [][]int{{39, 421, 78, 897, 11}, {5}, {100, 200, 300, 7, 8, 9, 10, 11, 12}}
			ctx := context.Background()
			single := make([]*model.KVCache, len(prompts))
			batched := make([]*model.KVCache, len(prompts))
			inputs := make([][]int, len(prompts))
			for i := range prompts {
				single[i], batched[i] = m.NewKVCache(), m.NewKVCache()
				inputs[i] = prompts[i]
			}
			for step := 0; step < 6; step++ {
				// a sequence joins late: the third starts at step 2
				var seqs [][]int
				var caches []*model.KVCache
				var which []int
				for i := range prompts {
					if i == 2 && step < 2 {
						continue
					}
					seqs, caches, which = append(seqs, inputs[i]), append(caches, batched[i]), append(which, i)
				}
				got, err := m.StepLogits(ctx, seqs, caches)
				if err != nil {
					t.Fatal(err)
				}
				for k, i := range which {
					want, err := m.StepLogits(ctx, [][]int{inputs[i]}, []*model.KVCache{single[i]})
					if err != nil {
						t.Fatal(err)
					}
					if d := relDiffF(want[0], got[k]); d > 1e-5 {
						t.Errorf("step %d seq %d: batched logits differ by %.2g relative", step, i, d)
					}
					next := argmaxF(want[0])
					if argmaxF(got[k]) != next {
						t.Errorf("step %d seq %d: batched argmax %d, alone %d", step, i, argmaxF(got[k]), next)
					}
					inputs[i] = []int{next}
				}
			}
		})
	}
}

func relDiffF(a, b []float32) float64 {
	var maxAbs, maxD float64
	for i := range a {
		maxAbs = math.Max(maxAbs, math.Abs(float64(a[i])))
		maxD = math.Max(maxD, math.Abs(float64(a[i])-float64(b[i])))
	}
	return maxD / maxAbs
}
