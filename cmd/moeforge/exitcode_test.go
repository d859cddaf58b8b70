package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// TestExitCode: the typed errors of the format packages map to exit code 2
// through any wrapping; a failed check is 1 even when it wraps one.
func TestExitCode(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "qwen2"`), 0o644)
	_, cfgErr := hf.Open(dir)
	if !errors.Is(cfgErr, safetensors.ErrFormat) {
		t.Fatalf("truncated config.json: %v does not match safetensors.ErrFormat", cfgErr)
	}
	_, stErr := safetensors.Parse("x.safetensors", []byte{1})
	_, missing := hf.Open(filepath.Join(dir, "nope"))
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("--in: %w", cfgErr), 2},
		{fmt.Errorf("reading: %w", stErr), 2},
		{missing, 2},
		{failed(stErr), 1},
		{errors.New("--threads: bad"), 2},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
