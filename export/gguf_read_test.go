package export

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gguf"
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
	cases = append(cases, tc{"qwen2_dense_tiny(tied)/F32", materialized(t, "fixtures/qwen2_dense_tiny/model"), GGUFOptions{Type: ggufF32, TypeSet: true}})
	cases = append(cases,
		tc{"qwen2_moe_small/GPTQ→Q4_0", rtnCheckpoint(t, materialized(t, "models/qwen2_moe_small"), 32, true), GGUFOptions{}},
		tc{"mixtral_tiny/GPTQ→Q4_0", rtnCheckpoint(t, materialized(t, "fixtures/mixtral_tiny/model"), 32, true), GGUFOptions{}},
		tc{"qwen2_moe_small/GPTQ 8-bit→Q8_0", rtnCheckpointBits(t, materialized(t, "models/qwen2_moe_small"), 8, 32, true), GGUFOptions{}})
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

// rewriteGGUF copies the GGUF file at path with its metadata edited and a
// tensor optionally dropped or retyped, for hostile-input tests.
func rewriteGGUF(t *testing.T, path string, edit func(kv *gguf.KV), drop string, shrink string) string {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), "edited.gguf")
	fd, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	w := gguf.NewWriter(fd)
	for _, kv := range f.KVs {
		kv := kv
		if edit != nil {
			edit(&kv)
		}
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	var keep []*gguf.Tensor
	for _, tt := range f.Tensors {
		if tt.Name == drop {
			continue
		}
		dims := tt.Dims
		if tt.Name == shrink {
			dims = []int{dims[0] / 2}
		}
		if err := w.AddTensor(tt.Name, tt.Type, dims); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, tt)
	}
	w.WriteHeader()
	for _, tt := range keep {
		b := tt.Bytes()
		if tt.Name == shrink {
			b = b[:len(b)/2]
		}
		if err := w.WriteTensor(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGGUFSourceHostile: well-formed GGUF files whose metadata or tensors do
// not describe a model are refused with an error naming the key or tensor,
// never a panic.
func TestGGUFSourceHostile(t *testing.T) {
	path, _ := exportFile(t, materialized(t, "fixtures/mixtral_tiny/model"), GGUFOptions{Type: ggufF32, TypeSet: true})
	set := func(key string, v any) func(*gguf.KV) {
		return func(kv *gguf.KV) {
			if kv.Key == key {
				kv.Value = v
			}
		}
	}
	for _, c := range []struct {
		name, file, want string
	}{
		{"more layers", rewriteGGUF(t, path, set("llama.block_count", uint32(3)), "", ""), "missing tensor blk.2.attn_norm.weight"},
		{"wider", rewriteGGUF(t, path, set("llama.embedding_length", uint32(128)), "", ""), "token_embd.weight has ne [64 1024], want [128 1024]"},
		{"layer count type", rewriteGGUF(t, path, set("llama.block_count", "two"), "", ""), "llama.block_count missing or not an unsigned integer"},
		{"no experts", rewriteGGUF(t, path, set("llama.expert_count", uint32(0)), "", ""), "without experts"},
		{"other architecture", rewriteGGUF(t, path, set("general.architecture", "gemma"), "", ""), `general.architecture "gemma" is not read`},
		{"missing tensor", rewriteGGUF(t, path, nil, "blk.1.ffn_down_exps.weight", ""), "missing tensor blk.1.ffn_down_exps.weight"},
		{"short norm", rewriteGGUF(t, path, nil, "", "blk.0.ffn_norm.weight"), "blk.0.ffn_norm.weight has ne [32], want [64]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := model.Open(c.file)
			if err == nil {
				m.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, c.want)
			}
		})
	}
}
