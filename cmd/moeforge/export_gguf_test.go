package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportGGUF(t *testing.T) {
	in := checkpointCopy(t, "models/qwen2_moe_small")
	outDir := t.TempDir()
	out := filepath.Join(outDir, "moe.gguf")
	code, stdout, stderr := runMoeforge(t, "export", "gguf", "--in", in, "--out", out, "--type", "q4_0", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Out          string         `json:"out"`
		Architecture string         `json:"architecture"`
		Type         string         `json:"type"`
		Tensors      int            `json:"tensors"`
		Bytes        int64          `json:"bytes"`
		TensorTypes  map[string]int `json:"tensor_types"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	// 3 layers × (q, k, v, o, 3 shared, 3 stacked experts) quantized; the
	// embeddings and output keep the checkpoint's bf16.
	if res.Architecture != "qwen2moe" || res.Type != "Q4_0" || res.Bytes != st.Size() || res.TensorTypes["Q4_0"] != 30 || res.TensorTypes["BF16"] != 2 {
		t.Errorf("summary %+v (file %d bytes)", res, st.Size())
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("output directory holds %d entries, want only moe.gguf", len(entries))
	}

	// inspect reads it back.
	code, stdout, stderr = runMoeforge(t, "inspect", out)
	if code != 0 || !strings.Contains(stdout, "qwen2moe") || !strings.Contains(stdout, "Q4_0: 30 tensors") || !strings.Contains(stdout, "gpt2 (pre qwen2), 1024 tokens") {
		t.Errorf("inspect: exit %d\n%s%s", code, stdout, stderr)
	}

	// An existing output is refused without --force, and left alone.
	code, _, stderr = runMoeforge(t, "export", "gguf", "--in", in, "--out", out, "--type", "f16")
	if code != 2 || !strings.Contains(stderr, "exists (use --force") {
		t.Errorf("existing output: exit %d, %q", code, stderr)
	}
	if st2, _ := os.Stat(out); st2.Size() != st.Size() {
		t.Error("existing output was modified")
	}
	code, _, stderr = runMoeforge(t, "export", "gguf", "--in", in, "--out", out, "--type", "f16", "--force")
	if code != 0 {
		t.Errorf("--force: exit %d, %s", code, stderr)
	}
}

func TestExportGGUFErrors(t *testing.T) {
	good := checkpointCopy(t, "models/qwen2_moe_small")
	edit := func(t *testing.T, file string, f func(m map[string]any)) string {
		dir := checkpointCopy(t, "models/qwen2_moe_small")
		p := filepath.Join(dir, file)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		raw, _ = json.Marshal(m)
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	truncated := checkpointCopy(t, "models/qwen2_moe_small")
	if err := os.Truncate(filepath.Join(truncated, "model.safetensors"), 1000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing input", []string{"--in", filepath.Join(t.TempDir(), "nope")}, "no such checkpoint directory"},
		{"bad type", []string{"--in", good, "--type", "q4_k"}, `--type "q4_k"`},
		{"norm_topk_prob", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["norm_topk_prob"] = true })}, "norm_topk_prob=true"},
		{"dense layer", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["mlp_only_layers"] = []int{1} })}, "mlp_only_layers=[1]"},
		{"sparse step", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["decoder_sparse_step"] = 2 })}, "decoder_sparse_step=2"},
		{"head_dim", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["head_dim"] = 32 })}, "head_dim=32"},
		{"sliding window", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["use_sliding_window"], m["sliding_window"] = true, 128 })}, "sliding_window=128"},
		{"hidden_act", []string{"--in", edit(t, "config.json", func(m map[string]any) { m["hidden_act"] = "gelu" })}, "hidden_act"},
		{"no tokenizer", []string{"--in", func() string {
			d := checkpointCopy(t, "models/qwen2_moe_small")
			os.Remove(filepath.Join(d, "tokenizer.json"))
			return d
		}()}, "no tokenizer.json"},
		{"sentencepiece", []string{"--in", edit(t, "tokenizer.json", func(m map[string]any) { m["model"].(map[string]any)["byte_fallback"] = true })}, "SentencePiece-style tokenizer"},
		{"truncated weights", []string{"--in", truncated}, "model.safetensors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outDir := t.TempDir()
			args := append([]string{"export", "gguf", "--out", filepath.Join(outDir, "x.gguf")}, c.args...)
			code, _, stderr := runMoeforge(t, args...)
			if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q: want exit 2 and one line containing %q", code, stderr, c.want)
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Errorf("left %d entries behind", len(entries))
			}
		})
	}
}

// TestExportGGUFZeroSharedGate: shared-exact upcycling writes an all-zero
// shared_expert_gate (sigmoid(0) = ½), which llama.cpp's silu(x)/x gate
// turns into NaN: the export refuses it naming the tensor.
func TestExportGGUFZeroSharedGate(t *testing.T) {
	dense := checkpointCopy(t, "fixtures/qwen2_dense_tiny/model")
	moe := filepath.Join(t.TempDir(), "moe")
	code, _, stderr := runMoeforge(t, "convert", "upcycle", "--in", dense, "--out", moe, "--init", "shared-exact",
		"--expert-size", "64")
	if code != 0 {
		t.Fatalf("upcycle: exit %d: %s", code, stderr)
	}
	code, _, stderr = runMoeforge(t, "export", "gguf", "--in", moe, "--out", filepath.Join(t.TempDir(), "x.gguf"))
	if code != 2 || !strings.Contains(stderr, "model.layers.0.mlp.shared_expert_gate.weight is all zero") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

func TestInspectBrokenGGUF(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"magic.gguf":   "GGML\x03\x00\x00\x00",
		"version.gguf": "GGUF\x09\x00\x00\x00" + strings.Repeat("\x00", 16),
		"short.gguf":   "GGUF\x03\x00",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		code, _, stderr := runMoeforge(t, "inspect", p)
		if code != 2 || !strings.HasPrefix(stderr, "moeforge: "+p+": ") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, %q", name, code, stderr)
		}
	}
}

// TestGGUFForwardCommands: eval ppl and verify take a GGUF file, tokenizing
// with its own metadata; an F32 export verifies as exact against its source.
func TestGGUFForwardCommands(t *testing.T) {
	in := checkpointCopy(t, "models/qwen2_moe_small")
	out := filepath.Join(t.TempDir(), "moe.gguf")
	if code, _, stderr := runMoeforge(t, "export", "gguf", "--in", in, "--out", out, "--type", "f32"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	text := filepath.Join("..", "..", "testdata", "tinyshakespeare.txt")
	ppl := func(path string) float64 {
		code, stdout, stderr := runMoeforge(t, "eval", "ppl", path, "--text", text, "--windows", "2", "--seqlen", "64", "--json")
		if code != 0 {
			t.Fatalf("eval ppl %s: exit %d: %s", path, code, stderr)
		}
		var r struct{ PPL float64 }
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		return r.PPL
	}
	if a, b := ppl(in), ppl(out); a != b || a == 0 {
		t.Errorf("perplexity %v on the checkpoint, %v on its F32 GGUF", a, b)
	}
	code, stdout, stderr := runMoeforge(t, "verify", "--ref", in, "--candidate", out, "--text", text, "--windows", "2", "--seqlen", "64", "--expect", "exact")
	if code != 0 {
		t.Errorf("verify --candidate FILE.gguf: exit %d\n%s%s", code, stdout, stderr)
	}
	gen := func(path string) string {
		code, stdout, stderr := runMoeforge(t, "generate", path, "--prompt", "ROMEO:", "--max-new-tokens", "12", "--json")
		if code != 0 {
			t.Fatalf("generate %s: exit %d: %s", path, code, stderr)
		}
		var r struct{ Text string }
		json.Unmarshal([]byte(stdout), &r)
		return r.Text
	}
	if a, b := gen(in), gen(out); a != b || a == "" {
		t.Errorf("generate: %q from the checkpoint, %q from its GGUF", a, b)
	}
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(bad, []byte("GGUF\x03\x00\x00\x00\x01"), 0o644)
	if code, _, stderr := runMoeforge(t, "eval", "ppl", bad, "--text", text); code != 2 || !strings.Contains(stderr, "bad.gguf: header: truncated") {
		t.Errorf("truncated GGUF: exit %d, %q", code, stderr)
	}
}
