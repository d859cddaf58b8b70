package model_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
)

// batchMajorLogits is today's batch-major pass: Logits batch by batch.
func batchMajorLogits(t *testing.T, m *model.Model, seqs [][]int, batch int) []float32 {
	t.Helper()
	var out []float32
	for i := 0; i < len(seqs); i += batch {
		lg, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs[i:min(i+batch, len(seqs))]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lg...)
	}
	return out
}

// layerMajorLogits collects the logits of a layer-major pass, checking the
// chunks are whole windows, in order, within the logits cap.
func layerMajorLogits(t *testing.T, m *model.Model, seqs [][]int, opt model.PassOptions) []float32 {
	t.Helper()
	var steps []int
	opt.Progress = func(done, total int) {
		if total != len(m.Layers)+1 {
			t.Errorf("progress total %d, want %d", total, len(m.Layers)+1)
		}
		steps = append(steps, done)
	}
	x, err := m.HiddenLayerMajor(context.Background(), seqs, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != len(m.Layers)+1 || steps[len(steps)-1] != len(m.Layers)+1 {
		t.Errorf("progress steps %v", steps)
	}
	var out []float32
	next := 0
	V := m.Config.VocabSize
	err = m.LogitsChunks(context.Background(), seqs, x, opt, func(first, n int, logits []float32) error {
		if first != next || n < 1 {
			t.Errorf("chunk of %d windows at %d, want one at %d", n, first, next)
		}
		tokens := 0
		for _, s := range seqs[first : first+n] {
			tokens += len(s)
		}
		if len(logits) != tokens*V {
			t.Errorf("chunk at %d: %d logits for %d tokens", first, len(logits), tokens)
		}
		if opt.LogitsBytes > 0 && n > 1 && int64(len(logits))*4 > opt.LogitsBytes {
			t.Errorf("chunk at %d holds %d bytes of logits, over the cap %d", first, len(logits)*4, opt.LogitsBytes)
		}
		next = first + n
		out = append(out, logits...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != len(seqs) {
		t.Errorf("chunks covered %d of %d windows", next, len(seqs))
	}
	return out
}

// TestLayerMajorEqualsBatchMajor checks that the layer-major pass gives
// the batch-major logits bit for bit on the same batches (sequences of
// different lengths; dense, Qwen2-MoE and Mixtral models), and
// within GEMM rounding when the logits cap splits a batch.
func TestLayerMajorEqualsBatchMajor(t *testing.T) {
	for _, fx := range []string{"qwen2_dense_tiny", "qwen2_moe_tiny", "mixtral_tiny"} {
		t.Run(fx, func(t *testing.T) {
			m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/"+fx), "model"))
			seqs := corpus.RandomIDs(5, 17, m.Config.VocabSize, 9)
			seqs[3] = seqs[3][:9] // unequal lengths
			for _, batch := range []int{1, 2, 5} {
				want := batchMajorLogits(t, m, seqs, batch)
				got := layerMajorLogits(t, m, seqs, model.PassOptions{Batch: batch})
				if len(got) != len(want) {
					t.Fatalf("batch %d: %d logits, want %d", batch, len(got), len(want))
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("batch %d: logit %d = %g, batch-major %g", batch, i, got[i], want[i])
					}
				}
			}
			// A cap of one window's logits splits batches of 5: rounding only.
			capped := int64(17 * m.Config.VocabSize * 4)
			want := batchMajorLogits(t, m, seqs, 5)
			got := layerMajorLogits(t, m, seqs, model.PassOptions{Batch: 5, LogitsBytes: capped})
			var worst, scale float64
			for i := range want {
				worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
				scale = math.Max(scale, math.Abs(float64(want[i])))
			}
			if worst > 1e-5*scale {
				t.Errorf("capped logits: max |Δ| %g of max |logit| %g", worst, scale)
			}
		})
	}
}

// TestLayerMajorCancel checks that a cancelled pass stops with the context's error.
func TestLayerMajorCancel(t *testing.T) {
	m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.HiddenLayerMajor(ctx, corpus.RandomIDs(2, 8, m.Config.VocabSize, 1), model.PassOptions{}); err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// BenchmarkPass runs 8 windows of 64 tokens through qwen2_moe_tiny
// batch-major (Logits per batch) and layer-major, printing tokens/s.
func BenchmarkPass(b *testing.B) {
	m, err := model.Open(filepath.Join(fixturetest.Dir(b, "fixtures/qwen2_moe_tiny"), "model"))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	seqs := corpus.RandomIDs(8, 64, m.Config.VocabSize, 2)
	run := map[string]func(){
		"batch-major": func() {
			for i := 0; i < len(seqs); i += 2 {
				if _, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs[i : i+2]}, nil); err != nil {
					b.Fatal(err)
				}
			}
		},
		"layer-major": func() {
			opt := model.PassOptions{Batch: 2}
			x, err := m.HiddenLayerMajor(context.Background(), seqs, opt)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.LogitsChunks(context.Background(), seqs, x, opt, func(int, int, []float32) error { return nil }); err != nil {
				b.Fatal(err)
			}
		},
	}
	for _, name := range []string{"batch-major", "layer-major"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				run[name]()
			}
			b.ReportMetric(float64(8*64*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
