package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportMLX runs the command end to end on the tiny fixture: a GPTQ
// (RTN) checkpoint repacked to MLX verifies exact against it, a float
// export verifies as quantized against the float model, inspect describes
// the result, and bad inputs exit 2 naming what is wrong.
func TestExportMLX(t *testing.T) {
	src := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	tmp := t.TempDir()
	gq := filepath.Join(tmp, "gptq")
	if code, _, stderr := runMoeforge(t, "quantize", "--quiet", "--in", src, "--out", gq, "--method", "rtn", "--group-size", "32"); code != 0 {
		t.Fatalf("quantize: %d %s", code, stderr)
	}
	out := filepath.Join(tmp, "mlx")
	code, stdout, stderr := runMoeforge(t, "export", "mlx", "--in", gq, "--out", out)
	if code != 0 || !strings.Contains(stdout, "repacked exactly") {
		t.Fatalf("export mlx of GPTQ: %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runMoeforge(t, "verify", "--ref", gq, "--candidate", out, "--random", "2", "--seqlen", "16", "--expect", "exact")
	if code != 0 {
		t.Fatalf("verify GPTQ → MLX exact: %d\n%s%s", code, stdout, stderr)
	}

	f8 := filepath.Join(tmp, "mlx8")
	if code, _, stderr := runMoeforge(t, "export", "mlx", "--in", src, "--out", f8, "--bits", "8", "--group-size", "32", "--json"); code != 0 {
		t.Fatalf("export mlx of float: %d %s", code, stderr)
	}
	if code, stdout, stderr := runMoeforge(t, "verify", "--ref", src, "--candidate", f8, "--random", "2", "--seqlen", "16", "--expect", "quantized"); code != 0 {
		t.Fatalf("verify float → MLX 8-bit: %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runMoeforge(t, "inspect", f8)
	if code != 0 || !strings.Contains(stdout, "mlx") || !strings.Contains(stdout, "switch_mlp") {
		t.Errorf("inspect MLX: %d\n%s", code, stdout)
	}

	// Bad inputs: exit 2, one line naming the problem, nothing left behind.
	bad := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	var cfg map[string]any
	data, _ := os.ReadFile(filepath.Join(bad, "config.json"))
	json.Unmarshal(data, &cfg)
	cfg["norm_topk_prob"] = true
	data, _ = json.Marshal(cfg)
	os.WriteFile(filepath.Join(bad, "config.json"), data, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--in", filepath.Join(tmp, "nope"), "--out", filepath.Join(tmp, "o1")}, "nope"},
		{[]string{"--in", src, "--out", out}, "--force"},
		{[]string{"--in", bad, "--out", filepath.Join(tmp, "o2")}, "norm_topk_prob"},
		{[]string{"--in", src, "--out", filepath.Join(tmp, "o3"), "--bits", "3"}, "bits"},
		{[]string{"--in", src, "--out", filepath.Join(tmp, "o4"), "--group-size", "16"}, "group_size"},
	} {
		code, _, stderr := runMoeforge(t, append([]string{"export", "mlx"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("export mlx %v: exit %d, stderr %q; want 2 naming %q", tc.args, code, stderr, tc.want)
		}
	}
	// A corrupted MLX directory: config bits that do not match the stored
	// words are refused naming the tensor, by inspect and by the forward pass.
	data, _ = os.ReadFile(filepath.Join(f8, "config.json"))
	json.Unmarshal(data, &cfg)
	q := cfg["quantization"].(map[string]any)
	q["bits"] = 4.0
	data, _ = json.Marshal(cfg)
	os.WriteFile(filepath.Join(f8, "config.json"), data, 0o644)
	for _, args := range [][]string{{"inspect", f8}, {"verify", "--ref", src, "--candidate", f8, "--random", "1", "--seqlen", "8"}} {
		code, _, stderr := runMoeforge(t, args...)
		if code != 2 || !strings.Contains(stderr, "tensor ") || !strings.Contains(stderr, "4-bit affine") {
			t.Errorf("%v on a corrupted MLX dir: exit %d, %q", args, code, stderr)
		}
	}
	for _, o := range []string{"o1", "o2", "o3", "o4"} {
		if _, err := os.Stat(filepath.Join(tmp, o)); err == nil {
			t.Errorf("%s left behind", o)
		}
	}
}
