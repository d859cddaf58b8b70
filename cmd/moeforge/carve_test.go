package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture"
)

func TestConvertCarveCommand(t *testing.T) {
	dense := convertFixture(t, "fixtures/qwen2_dense_tiny")
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(root, "tinyshakespeare.txt")
	out := filepath.Join(t.TempDir(), "carved")
	stdout, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "carve",
		"--calib", text, "--nsamples", "4", "--calib-seqlen", "64", "--verify", "--text", text, "--windows", "2", "--seqlen", "64")
	if code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, stdout)
	}
	for _, want := range []string{
		"upcycle carve (approximate): qwen2 → qwen2_moe",
		"experts   12 × 16, top-4, norm_topk_prob true (method activation)",
		"shared    64: the 64 neurons of largest activation mass",
		"calib     4 windows, 256 tokens",
		"LAYER  SHARED MASS  COVERED MASS  ROUTED COVERED  ORACLE  K/E    K-MEANS IT  SWAPS",
		"note      carve: 128 of 256 FFN neurons active per token (50.0%)",
		"verify: 2 windows × 64 tokens",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "exact: ") {
		t.Errorf("an approximate recipe got an exactness verdict:\n%s", stdout)
	}

	stdout, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--force", "--init", "carve",
		"--calib", text, "--nsamples", "4", "--calib-seqlen", "64", "--top-k", "8", "--carve-shared", "frequency", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	var rep struct {
		Summary struct {
			TopK  int `json:"top_k"`
			Carve struct {
				SharedBy string `json:"shared_by"`
				Tokens   int    `json:"calibration_tokens"`
				Layers   []struct {
					Layer   int
					Covered float64 `json:"covered_mass"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	s := rep.Summary
	if s.TopK != 8 || s.Carve.SharedBy != "frequency" || s.Carve.Tokens != 256 || len(s.Carve.Layers) != 3 || !(s.Carve.Layers[2].Covered > 0.5) {
		t.Errorf("summary %+v", s)
	}
}

func TestConvertCarveErrors(t *testing.T) {
	dense := convertFixture(t, "fixtures/qwen2_dense_tiny")
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(root, "tinyshakespeare.txt")
	tmp := t.TempDir()
	if err := os.Mkdir(filepath.Join(tmp, "o"), 0o755); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(tmp, "short.txt")
	if err := os.WriteFile(short, []byte("To be, or not to be."), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no calib", []string{"--init", "carve"}, "needs --calib FILE"},
		{"calib for another mode", []string{"--init", "hybrid-exact", "--calib", text}, "--calib is for --init carve"},
		{"missing calib", []string{"--init", "carve", "--calib", filepath.Join(tmp, "none.txt")}, "none.txt"},
		{"short calib", []string{"--init", "carve", "--calib", short}, "fewer than one window"},
		{"not a partition", []string{"--init", "carve", "--calib", text, "--experts", "5", "--shared-size", "64"}, "partitions the FFN"},
		{"bad method", []string{"--init", "carve", "--carve-method", "magic"}, `unknown carve method "magic"`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(tmp, "o", string(rune('a'+i)))
			_, code, err := runConvertCmd(t, append([]string{"upcycle", "--in", dense, "--out", out}, tc.args...)...)
			if code != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("exit %d, error %v; want exit 2 and %q", code, err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused carving left %s (%v)", out, err)
			}
		})
	}
}
