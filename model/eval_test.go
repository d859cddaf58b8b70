package model_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

// evalWindows returns the evaluation windows of ALGORITHMS.md §4 for the
// trained model in testdata/models/name: the last 10% of tinyshakespeare,
// tokenized with the model's own tokenizer.json, cut into n windows of
// seqlen tokens.
func evalWindows(tb testing.TB, dir string, n, seqlen int) [][]int {
	tb.Helper()
	root, err := fixture.Root()
	if err != nil {
		tb.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(root, "tinyshakespeare.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	_, eval, err := corpus.SplitText(string(text), 0.9)
	if err != nil {
		tb.Fatal(err)
	}
	windows, err := corpus.EvalWindows(tok.Encode(eval), n, seqlen)
	if err != nil {
		tb.Fatal(err)
	}
	return windows
}

func loadModel(tb testing.TB, dir string) *model.Model {
	tb.Helper()
	m, err := model.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// TestTrainedModelsPerplexity is the end-to-end check of tokenizer and
// forward pass: the three trained models of testdata/models have a
// perplexity between 30 and 36 on the §4 protocol (16 windows × 256
// tokens), as measured when they were trained.
func TestTrainedModelsPerplexity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three models over 16×256 tokens (about 6 s)")
	}
	for _, name := range []string{"qwen2_dense_small", "qwen2_moe_small", "qwen2_moe_a60"} {
		t.Run(name, func(t *testing.T) {
			dir := fixturetest.Dir(t, "models/"+name)
			m := loadModel(t, dir)
			windows := evalWindows(t, dir, 16, 256)
			start := time.Now()
			ppl, n, err := verify.Perplexity(context.Background(), m, windows, 4, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n != 16*255 {
				t.Errorf("predicted %d positions, want %d", n, 16*255)
			}
			if ppl < 30 || ppl > 36 {
				t.Errorf("perplexity %.4f, want within [30, 36]", ppl)
			}
			t.Logf("%s: ppl %.4f over %d positions in %v", name, ppl, n, time.Since(start).Round(time.Millisecond))
		})
	}
}

// BenchmarkEvalPPL measures the forward pass on the evaluation protocol
// (16 windows × 256 tokens of qwen2_moe_small, 4 windows per batch) and
// reports tokens/s counting every input token.
func BenchmarkEvalPPL(b *testing.B) {
	dir := fixturetest.Dir(b, "models/qwen2_moe_small")
	m := loadModel(b, dir)
	windows := evalWindows(b, dir, 16, 256)
	var ppl float64
	b.ResetTimer()
	for b.Loop() {
		var err error
		ppl, _, err = verify.Perplexity(context.Background(), m, windows, 4, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*16*256)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(ppl, "ppl")
}

// BenchmarkGenerate measures greedy decoding with the KV cache: a 32-token
// prompt from the evaluation text, then 128 new tokens one at a time;
// tokens/s counts the generated tokens.
func BenchmarkGenerate(b *testing.B) {
	for _, name := range []string{"qwen2_dense_small", "qwen2_moe_small", "qwen2_moe_a60"} {
		b.Run(name, func(b *testing.B) {
			dir := fixturetest.Dir(b, "models/"+name)
			m := loadModel(b, dir)
			prompt := evalWindows(b, dir, 1, 32)[0]
			opt := model.GenerateOptions{MaxNewTokens: 128}
			for b.Loop() {
				g, err := m.Generate(context.Background(), prompt, opt, nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(g.IDs) != opt.MaxNewTokens {
					b.Fatalf("generated %d tokens, want %d", len(g.IDs), opt.MaxNewTokens)
				}
			}
			b.ReportMetric(float64(b.N*opt.MaxNewTokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
