package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture"
)

// convertFixture materializes testdata/rel into a fresh temporary directory
// (removed with the test) and returns the checkpoint directory.
func convertFixture(t *testing.T, rel string) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := fixture.Materialize(filepath.Join(root, rel), dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "model")); err == nil {
		return filepath.Join(dst, "model")
	}
	return dst
}

// runConvertCmd runs `moeforge convert ARGS` in-process and returns stdout
// and the exit code main would use (0, 1 for failures, 2 for bad input).
func runConvertCmd(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"convert"}, args...))
	err := root.Execute()
	code := 0
	var f failure
	switch {
	case err == nil:
	case errors.Is(err, errSilentFailure), errors.As(err, &f):
		code = 1
	default:
		code = 2
	}
	return out.String(), code, err
}

func TestConvertUpcycleCommand(t *testing.T) {
	dense := convertFixture(t, "fixtures/qwen2_dense_tiny")
	out := filepath.Join(t.TempDir(), "moe")
	stdout, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "hybrid-exact",
		"--verify", "--random", "2", "--seqlen", "32", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	var rep struct {
		Output  string
		Summary struct {
			Recipe     string
			OutputArch string `json:"output_architecture"`
			Experts    int
			TopK       int `json:"top_k"`
			Upcycle    struct{ Mode string }
		}
		Files struct {
			Shards []string
			Copied []string `json:"copied_files"`
		}
		Verify struct {
			Windows, SeqLen int
			Metrics         struct {
				MaxRel float64 `json:"max_rel_logit_diff"`
			}
			Pass *bool
		}
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output is not one JSON document: %v\n%s", err, stdout)
	}
	if rep.Output != out || rep.Summary.Recipe != "upcycle" || rep.Summary.Upcycle.Mode != "hybrid-exact" || rep.Summary.OutputArch != "qwen2_moe" ||
		rep.Summary.Experts != 8 || rep.Summary.TopK != 2 {
		t.Errorf("report %+v", rep)
	}
	if diff := cmp.Diff([]string{"model.safetensors"}, rep.Files.Shards); diff != "" {
		t.Errorf("shards (-want +got):\n%s", diff)
	}
	if rep.Verify.Pass == nil || !*rep.Verify.Pass || rep.Verify.Windows != 2 || rep.Verify.SeqLen != 32 || rep.Verify.Metrics.MaxRel > 1e-4 {
		t.Errorf("verify %+v", rep.Verify)
	}
	for _, f := range append([]string{"config.json", "model.safetensors"}, rep.Files.Copied...) {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("output lacks %s: %v", f, err)
		}
	}

	// A non-empty output is refused without --force (exit 2), replaced with it.
	_, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "virtual-group")
	if code != 2 || !strings.Contains(err.Error(), "--force") {
		t.Errorf("non-empty output: exit %d, %v; want 2 and a hint at --force", code, err)
	}
	_, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "virtual-group", "--force",
		"--verify", "--text", filepath.Join(t.TempDir(), "missing.txt"))
	if code != 2 || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing --text file: exit %d (%v), want 2 naming the file", code, err)
	}
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		t.Errorf("a refused run removed the previous output: %v", err)
	}
	_, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "virtual-group", "--force")
	if code != 0 {
		t.Errorf("--force: exit %d (%v)", code, err)
	}
}

func TestConvertUpcycleHumanOutput(t *testing.T) {
	dense := convertFixture(t, "fixtures/qwen2_dense_tiny")
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "moe")
	stdout, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "virtual-group",
		"--expert-size", "96", "--pad", "zero", "--experts", "6", "--top-k", "3", "--moe-layers", "0,2",
		"--verify", "--text", filepath.Join(root, "tinyshakespeare.txt"), "--windows", "2", "--seqlen", "64")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, stdout)
	}
	for _, want := range []string{
		"upcycle virtual-group (exact): qwen2 → qwen2_moe",
		"layers    MoE 0,2 (2), dense 1",
		"experts   6 × 96, top-3, norm_topk_prob true",
		"2 replicas × 3 routed pieces, 1 replica(s) selected per token",
		"FFN       256 → 3 pieces of 96, padded with 32 zero neurons",
		"routed down_proj ×3",
		"note      intermediate_size 256 is not a multiple of 96",
		"verify: 2 windows × 64 tokens of " + filepath.Join(root, "tinyshakespeare.txt"),
		"exact: PASS",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	dense := convertFixture(t, "fixtures/qwen2_dense_tiny")
	mixtral := convertFixture(t, "fixtures/mixtral_tiny")
	tmp := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no init", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "a")}, 2, "--init MODE is required"},
		{"bad combination", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "b"), "--init", "virtual-group", "--experts", "10"}, 2, "use --experts 8 or 12"},
		{"bad pad", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "c"), "--init", "virtual-group", "--pad", "yes"}, 2, "want none or zero"},
		{"bad layers", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "d"), "--init", "virtual-group", "--moe-layers", "x"}, 2, "--moe-layers"},
		{"layers and step", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "e"), "--init", "virtual-group", "--moe-layers", "1", "--decoder-sparse-step", "2"}, 2, "none of the others can be"},
		{"text without verify", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "f"), "--init", "virtual-group", "--text", "x"}, 2, "add --verify"},
		{"missing input", []string{"split", "--in", filepath.Join(tmp, "none"), "--out", filepath.Join(tmp, "g"), "--factor", "2"}, 2, "no such checkpoint directory"},
		{"split factor", []string{"split", "--in", mixtral, "--out", filepath.Join(tmp, "h"), "--factor", "5"}, 2, "e.g. 3, 4, 6, 8"},
		{"split dense", []string{"split", "--in", dense, "--out", filepath.Join(tmp, "i"), "--factor", "2"}, 2, "convert upcycle"},
		{"split bf16 x3", []string{"split", "--in", mixtral, "--out", filepath.Join(tmp, "j"), "--factor", "3", "--dtype", "bf16"}, 2, "not exact in bfloat16"},
		// f32 → bf16 rounds the dense weights: an exact mode then fails parity (exit 1), output kept.
		{"parity failure", []string{"upcycle", "--in", dense, "--out", filepath.Join(tmp, "k"), "--init", "shared-exact", "--dtype", "bf16", "--verify", "--random", "1", "--seqlen", "16"}, 1, "parity check failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, code, err := runConvertCmd(t, tc.args...)
			if code != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("exit %d, error %v; want exit %d and %q", code, err, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused conversion left an output directory (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "k", "config.json")); err != nil {
		t.Errorf("the output of a failed parity check was not kept: %v", err)
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary directory %s left behind", e.Name())
		}
	}
}

func TestConvertSplitCommand(t *testing.T) {
	mixtral := convertFixture(t, "fixtures/mixtral_tiny")
	out := filepath.Join(t.TempDir(), "split")
	stdout, code, err := runConvertCmd(t, "split", "--in", mixtral, "--out", out, "--factor", "4", "--verify", "--random", "2", "--seqlen", "24", "--max-shard-size", "300kB")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, stdout)
	}
	for _, want := range []string{
		"split ×4 (exact): mixtral → mixtral in " + out,
		"experts   8 × 96 top-2 → 32 × 24 top-8, norm_topk_prob true, down_proj ×4",
		"exact: PASS",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
		t.Errorf("--max-shard-size 300kB did not shard: %v", err)
	}
}
