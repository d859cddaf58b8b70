package model_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
)

// decodeInChunks runs the sequences through the model with one KV cache
// each, feeding sequence i chunks of the sizes in chunks[i] (cycled) in
// batches holding every sequence that has tokens left, and returns each
// sequence's logits [T, vocab] assembled from the steps.
func decodeInChunks(t *testing.T, m *model.Model, seqs [][]int, chunks [][]int) [][]float32 {
	t.Helper()
	V := m.Config.VocabSize
	caches := make([]*model.KVCache, len(seqs))
	for i := range caches {
		caches[i] = m.NewKVCache()
	}
	out := make([][]float32, len(seqs))
	step := 0
	for {
		b := &model.Batch{}
		var which []int
		for i, s := range seqs {
			pos := caches[i].Len
			if pos == len(s) {
				continue
			}
			n := min(chunks[i][step%len(chunks[i])], len(s)-pos)
			b.Seqs = append(b.Seqs, s[pos:pos+n])
			b.Caches = append(b.Caches, caches[i])
			which = append(which, i)
		}
		if len(which) == 0 {
			return out
		}
		logits, err := m.Logits(context.Background(), b, nil)
		if err != nil {
			t.Fatal(err)
		}
		row := 0
		for k, i := range which {
			n := len(b.Seqs[k])
			out[i] = append(out[i], logits[row*V:(row+n)*V]...)
			row += n
		}
		step++
	}
}

// TestKVCacheMatchesFullForward: feeding a sequence token by token or in
// chunks through a KV cache gives the logits of the full-sequence forward
// pass within 1e-5 × max|logit| (per sequence), with several sequences of
// different lengths and positions decoded in the same batch, and for
// sliding-window layers whose window the chunks cross.
func TestKVCacheMatchesFullForward(t *testing.T) {
	long := loadFixtureRef(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "reference_long.safetensors"))
	mixtralRef := loadFixtureRef(t, filepath.Join(fixturetest.Dir(t, "fixtures/mixtral_tiny"), "reference.safetensors"))
	type tcase struct {
		name   string
		m      *model.Model
		seqs   [][]int
		chunks [][]int
	}
	moeTiny := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	mixtral := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/mixtral_tiny"), "model"))
	dense := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_dense_tiny"), "model"))
	slidingQwen := loadModel(t, randomCheckpoint(t, branchCases[5].cfg, 3))
	slidingMixtral := loadModel(t, randomCheckpoint(t, branchCases[6].cfg, 4))
	cases := []tcase{
		{"qwen2_moe_tiny 200 tokens one at a time", moeTiny, long.ids, [][]int{{1}}},
		{"qwen2_moe_tiny 200 tokens prompt then tokens", moeTiny, long.ids, [][]int{{57, 1, 1, 5, 1}}},
		{"qwen2_moe_tiny 200 tokens in chunks of 7", moeTiny, long.ids, [][]int{{7}}},
		{"mixtral_tiny two sequences, different chunks", mixtral, mixtralRef.ids, [][]int{{1}, {5, 2}}},
		{"qwen2_dense_tiny GQA tied", dense, randomSeqs(9, 1024, 40, 33), [][]int{{3}, {1}}},
		{"qwen2 sliding window", slidingQwen, randomSeqs(10, 97, 30, 17), [][]int{{1}, {6, 1}}},
		{"mixtral sliding window", slidingMixtral, randomSeqs(11, 97, 29, 20), [][]int{{2, 9}, {1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			V := tc.m.Config.VocabSize
			full := logitsOf(t, tc.m, tc.seqs)
			got := decodeInChunks(t, tc.m, tc.seqs, tc.chunks)
			row := 0
			for i, s := range tc.seqs {
				want := full[row*V : (row+len(s))*V]
				if len(got[i]) != len(want) {
					t.Fatalf("sequence %d: %d logits, want %d", i, len(got[i]), len(want))
				}
				d := relDiff(got[i], want)
				if d > 1e-5 {
					t.Errorf("sequence %d: cached decoding differs from the full forward by %.3g relative > 1e-5", i, d)
				}
				t.Logf("sequence %d (%d tokens): %.3g relative", i, len(s), d)
				row += len(s)
			}
		})
	}
}

// TestBadInputs: invalid batches are refused with one-line errors that say
// what is wrong, before any computation.
func TestBadInputs(t *testing.T) {
	m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	long := make([]int, 513)
	cache := m.NewKVCache()
	if _, err := m.Logits(context.Background(), &model.Batch{Seqs: [][]int{make([]int, 500)}, Caches: []*model.KVCache{cache}}, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		batch *model.Batch
		want  string
	}{
		{"id too large", &model.Batch{Seqs: [][]int{{1, 2}, {3, 1024}}}, "token id 1024 out of range [0, 1024)"},
		{"negative id", &model.Batch{Seqs: [][]int{{-1}}}, "token id -1 out of range"},
		{"too long", &model.Batch{Seqs: [][]int{{1}, long}}, "sequence 1 reaches position 513, beyond max_position_embeddings=512"},
		{"too long with cache", &model.Batch{Seqs: [][]int{make([]int, 13)}, Caches: []*model.KVCache{cache}}, "reaches position 513"},
		{"caches mismatch", &model.Batch{Seqs: [][]int{{1}, {2}}, Caches: []*model.KVCache{m.NewKVCache()}}, "2 sequences but 1 caches"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Logits(context.Background(), tc.batch, nil)
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line mentioning %q", err, tc.want)
			}
		})
	}
	if cache.Len != 500 {
		t.Errorf("a refused batch changed the cache: length %d, want 500", cache.Len)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Logits(ctx, &model.Batch{Seqs: [][]int{{1, 2, 3}}}, nil); err != context.Canceled {
		t.Errorf("cancelled context: error %v, want context.Canceled", err)
	}
}
