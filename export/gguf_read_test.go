package export

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

// TestGGUFForward: moeforge's forward pass on an exported GGUF file (read
// back through the registered model.Source) gives the logits and expert
// choices of the Hugging Face source: F32 exports of all three
// architectures, and the exact GPTQ → Q4_0 repack against the GPTQ
// checkpoint.
func TestGGUFForward(t *testing.T) {
	type tc struct {
		name, dir string
		opt       GGUFOptions
	}
	var cases []tc
	for _, c := range judgeCases {
		cases = append(cases, tc{c.name + "/F32", materialized(t, c.rel), GGUFOptions{Type: ggufF32, TypeSet: true}})
	}
	cases = append(cases,
		tc{"qwen2_moe_small/GPTQ→Q4_0", rtnCheckpoint(t, materialized(t, "models/qwen2_moe_small"), 32, true), GGUFOptions{}},
		tc{"mixtral_tiny/GPTQ→Q4_0", rtnCheckpoint(t, materialized(t, "fixtures/mixtral_tiny/model"), 32, true), GGUFOptions{}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, _ := exportFile(t, c.dir, c.opt)
			seqs := textIDs(t, c.dir, 2, 64)
			want, wantRoutes := logitsAndRoutes(t, c.dir, seqs)
			got, gotRoutes := logitsAndRoutes(t, path, seqs)
			rel, top1 := logitStats(got, want, len(want)/(2*64))
			t.Logf("moeforge on the GGUF file vs on the checkpoint: max rel Δlogit %.2g, top-1 %.1f%%", rel, 100*top1)
			if rel > 1e-5 || top1 != 1 {
				t.Errorf("max rel Δlogit %.2g (≤ 1e-5), top-1 %.1f%%", rel, 100*top1)
			}
			if diff := cmp.Diff(wantRoutes, gotRoutes); diff != "" {
				t.Errorf("expert choices differ:\n%.2000s", diff)
			}
		})
	}
}

// logitsAndRoutes opens path with model.Open (a checkpoint or a GGUF file)
// and returns the logits and every MoE layer's selected experts.
func logitsAndRoutes(t *testing.T, path string, seqs [][]int) ([]float32, map[int][]int32) {
	t.Helper()
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	routes := map[int][]int32{}
	hooks := &model.Hooks{Routing: func(layer int, _ []float32, experts []int32, _ []float32) {
		routes[layer] = append(routes[layer], experts...)
	}}
	logits, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	return logits, routes
}

// TestGGUFTokenizerFromFile: the tokenizer rebuilt from a GGUF file's
// metadata encodes as the source tokenizer.json does.
func TestGGUFTokenizerFromFile(t *testing.T) {
	dir := materialized(t, "models/qwen2_moe_small")
	path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
	fromFile, err := GGUFTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	text := "First Citizen:\nBefore we proceed any further, hear me speak.<|im_start|>user\n déjà  vu\t1234<|im_end|><|endoftext|>"
	if diff := cmp.Diff(src.Encode(text), fromFile.Encode(text)); diff != "" {
		t.Error(diff)
	}
	if fromFile.VocabSize() != src.VocabSize() {
		t.Errorf("vocab %d, want %d", fromFile.VocabSize(), src.VocabSize())
	}
}
