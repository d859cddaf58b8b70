package export

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/convert"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/judge"
)

// writeQwen3Ckpt writes a tiny random F32 qwen3 (moe false) or qwen3_moe
// checkpoint, deterministic for a seed (so its F32 export is too): GQA 4 q /
// 2 kv heads with head_dim 16 ≠ hidden/heads = 8, the testdata tokenizer
// (vocab 1024); qwen3_moe: 8 experts × 16, top-2, norm_topk_prob, every layer
// MoE. edit sets config keys.
func writeQwen3Ckpt(t testing.TB, moe bool, edit map[string]any) string {
	t.Helper()
	cfg := map[string]any{
		"model_type": "qwen3", "architectures": []string{"Qwen3ForCausalLM"},
		"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
		"vocab_size": 1024, "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
		"rope_theta": 1e6, "attention_bias": false, "tie_word_embeddings": false,
		"eos_token_id": 1023, "dtype": "float32", "hidden_act": "silu",
	}
	if moe {
		for k, v := range map[string]any{
			"model_type": "qwen3_moe", "architectures": []string{"Qwen3MoeForCausalLM"},
			"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "norm_topk_prob": true,
			"decoder_sparse_step": 1, "mlp_only_layers": []int{},
		} {
			cfg[k] = v
		}
	}
	for k, v := range edit {
		cfg[k] = v
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	c, err := hf.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(3)
	if moe {
		seed = 5
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var plan []safetensors.Info
	values := map[string][]byte{}
	for _, spec := range c.Tensors() {
		n := 1
		for _, d := range spec.Shape {
			n *= d
		}
		s := 1.5 / math.Sqrt(float64(spec.Shape[len(spec.Shape)-1]))
		if spec.Name == hf.EmbedTokens {
			s = 1
		}
		b := make([]byte, 0, 4*n)
		for i := 0; i < n; i++ {
			var v float64
			switch {
			case len(spec.Shape) == 1 && strings.HasSuffix(spec.Name, "norm.weight"):
				v = 1 + 0.4*(rng.Float64()-0.5)
			case len(spec.Shape) == 1:
				v = 0.4 * (rng.Float64() - 0.5)
			default:
				v = s * rng.NormFloat64()
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(v)))
		}
		values[spec.Name] = b
		plan = append(plan, safetensors.Info{Name: spec.Name, DType: safetensors.F32, Shape: spec.Shape})
	}
	dir := filepath.Join(t.TempDir(), string(c.ModelType))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range plan {
		if err := w.Write(info.Name, values[info.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(root, "tokenizer", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var qwen3Cases = []struct {
	name string
	moe  bool
}{{"qwen3_tiny", false}, {"qwen3_moe_tiny", true}}

// upcycledQwen3 is the tiny qwen3 checkpoint upcycled into qwen3_moe with
// the exact virtual-group recipe (16 experts × 16, top-4, norm_topk_prob,
// every layer MoE: what llama.cpp's qwen3moe graph computes).
func upcycledQwen3(t testing.TB) string {
	t.Helper()
	ck, err := hf.Open(writeQwen3Ckpt(t, false, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	p, err := convert.Upcycle(ck, convert.UpcycleOptions{Mode: convert.VirtualGroup, ExpertSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "upcycled")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(context.Background(), out, convert.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// qwen3Dir is the checkpoint of a live case: the two tiny ones and the
// upcycled one.
func qwen3Dir(t testing.TB, name string, moe bool) string {
	if name == "qwen3_tiny_upcycled" {
		return upcycledQwen3(t)
	}
	return writeQwen3Ckpt(t, moe, nil)
}

var qwen3LiveCases = append(qwen3Cases[:len(qwen3Cases):len(qwen3Cases)], struct {
	name string
	moe  bool
}{"qwen3_tiny_upcycled", true})

// TestGGUFQwen3Forward: the forward pass on the F32 GGUF export of tiny
// qwen3 and qwen3_moe checkpoints (and of the qwen3 one upcycled) gives the
// source's logits bit for bit and its expert choices.
func TestGGUFQwen3Forward(t *testing.T) {
	for _, c := range qwen3LiveCases {
		t.Run(c.name, func(t *testing.T) {
			dir := qwen3Dir(t, c.name, c.moe)
			path, sum := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
			if want := map[bool]string{false: "qwen3", true: "qwen3moe"}[c.moe]; sum.Architecture != want {
				t.Errorf("architecture %q, want %q", sum.Architecture, want)
			}
			seqs := textIDs(t, dir, 2, 64)
			want, wantRoutes := logitsAndRoutes(t, dir, seqs)
			got, gotRoutes := logitsAndRoutes(t, path, seqs)
			if len(got) != len(want) {
				t.Fatalf("%d logits, want %d", len(got), len(want))
			}
			diffs := 0
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					diffs++
				}
			}
			if diffs != 0 {
				rel, _ := logitStats(got, want, len(want)/(2*64))
				t.Errorf("%d of %d logits differ from the checkpoint's (max rel %.2g), want bit for bit", diffs, len(want), rel)
			}
			if c.moe && len(wantRoutes) != 2 {
				// every layer of both MoE cases routes
				t.Errorf("routes of %d layers, want 2", len(wantRoutes))
			}
			if diff := cmp.Diff(wantRoutes, gotRoutes); diff != "" {
				t.Errorf("expert choices differ:\n%.2000s", diff)
			}
		})
	}
}

// TestGGUFQwen3Refusals: what llama.cpp's qwen3 / qwen3moe graphs compute
// differently is refused, naming the config key.
func TestGGUFQwen3Refusals(t *testing.T) {
	for _, c := range []struct {
		name string
		moe  bool
		edit map[string]any
		key  string
	}{
		{"attention_bias", false, map[string]any{"attention_bias": true}, "attention_bias=true"},
		{"moe attention_bias", true, map[string]any{"attention_bias": true}, "attention_bias=true"},
		{"norm_topk_prob", true, map[string]any{"norm_topk_prob": false}, "norm_topk_prob=false"},
		{"mlp_only_layers", true, map[string]any{"mlp_only_layers": []int{1}}, "mlp_only_layers=[1]"},
		{"decoder_sparse_step", true, map[string]any{"decoder_sparse_step": 2}, "decoder_sparse_step=2"},
		{"sliding_window", false, map[string]any{"use_sliding_window": true, "sliding_window": 64, "max_window_layers": 0}, "sliding_window=64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeQwen3Ckpt(t, c.moe, c.edit)
			ck, err := hf.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			_, err = PlanGGUF(ck, GGUFOptions{Type: ggufF32, TypeSet: true})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("PlanGGUF: %v, want a refusal naming %s", err, c.key)
			}
		})
	}
}

// TestGGUFQwen3Golden needs no Node: the F32 exports of the tiny qwen3 and
// qwen3_moe checkpoints are byte for byte the files llama.cpp judged, and
// moeforge's forward pass on the source matches the logits llama.cpp
// computed from them (≤ 1e-4 of the largest |logit|, same top-1).
// -update-judge-goldens rewrites the goldens from llama.cpp.
func TestGGUFQwen3Golden(t *testing.T) {
	for _, c := range qwen3Cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeQwen3Ckpt(t, c.moe, nil)
			checkGGUFGolden(t, c.name, dir)
		})
	}
}

// TestGGUFQwen3Judge runs llama.cpp on fresh F32 exports (2 × 128 tokens),
// the upcycled qwen3_moe included.
func TestGGUFQwen3Judge(t *testing.T) {
	jd := judge.Dir(t, "llamacpp")
	for _, c := range qwen3LiveCases {
		t.Run(c.name, func(t *testing.T) {
			dir := qwen3Dir(t, c.name, c.moe)
			path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
			seqs := textIDs(t, dir, 2, 128)
			llama := llamaLogits(t, jd, path, seqs)
			ours := moeforgeLogits(t, dir, seqs)
			if len(ours) != len(llama) {
				t.Fatalf("%d logits, llama.cpp gave %d", len(ours), len(llama))
			}
			rel, top1 := logitStats(llama, ours, len(ours)/(2*128))
			t.Logf("llama.cpp (F32 GGUF) vs moeforge (HF source), 2×128 tokens: max rel Δlogit %.2g, top-1 %.1f%%", rel, 100*top1)
			if rel > 1e-4 || top1 != 1 {
				t.Errorf("max rel Δlogit %.2g (≤ 1e-4), top-1 %.1f%% (100%%)", rel, 100*top1)
			}
		})
	}
}

// TestGGUFQwen3JudgeRefusalsMatter shows with llama.cpp why the refusals
// exist: exported with the check bypassed, norm_topk_prob=false and
// attention_bias=true checkpoints either do not load in llama.cpp or give
// logits that disagree with moeforge's (transformers') forward pass.
func TestGGUFQwen3JudgeRefusalsMatter(t *testing.T) {
	jd := judge.Dir(t, "llamacpp")
	for _, c := range []struct {
		name string
		moe  bool
		edit map[string]any
	}{
		{"norm_topk_prob=false", true, map[string]any{"norm_topk_prob": false}},
		{"attention_bias=true", false, map[string]any{"attention_bias": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeQwen3Ckpt(t, c.moe, c.edit)
			ck, err := hf.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			a := ggufArchs[ck.Config.ModelType]
			check := a.check
			a.check = func(*hf.Config) error { return nil }
			defer func() { a.check = check }()
			ck.Close()
			path, _ := exportFile(t, dir, GGUFOptions{Type: ggufF32, TypeSet: true})
			seqs := textIDs(t, dir, 1, 64)
			tmp := t.TempDir()
			ids, _ := json.Marshal(seqs)
			idsPath, out := filepath.Join(tmp, "ids.json"), filepath.Join(tmp, "logits.f32")
			if err := os.WriteFile(idsPath, ids, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("node", filepath.Join(jd, "logits.mjs"), path, idsPath, out, "1")
			cmd.Dir = jd
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Logf("llama.cpp refuses the file: %v: %.300s", err, firstError(string(b)))
				return
			}
			llama := readF32(t, out)
			ours := moeforgeLogits(t, dir, seqs)
			rel, top1 := logitStats(llama, ours, len(ours)/64)
			t.Logf("llama.cpp vs moeforge with the refusal bypassed: max rel Δlogit %.2g, top-1 %.1f%%", rel, 100*top1)
			if rel <= 1e-4 {
				t.Errorf("llama.cpp agrees (max rel Δlogit %.2g): the refusal of %s is not needed", rel, c.name)
			}
		})
	}
}

// firstError is the first line of llama.cpp's output that mentions an
// error, else its last line.
func firstError(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			return strings.TrimSpace(l)
		}
	}
	return lines[len(lines)-1]
}
