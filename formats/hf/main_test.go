package hf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// checkpoints are the checkpoint directories shipped in testdata/, relative to it.
var checkpoints = []string{
	"fixtures/mixtral_tiny/model",
	"fixtures/qwen2_dense_tiny/model",
	"fixtures/qwen2_moe_tiny/model",
	"fixtures/qwen2_moe_tiny_sharded/model",
	"models/qwen2_dense_small",
	"models/qwen2_moe_small",
	"models/qwen2_moe_a60",
}

// testdataPath is a path under the repository's testdata/ directory, for
// files that are stored uncompressed (configs).
func testdataPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// materialized returns a decompressed copy of the checkpoint testdata/rel
// (shared by the tests of this binary: do not modify it).
func materialized(t testing.TB, rel string) string {
	t.Helper()
	// Materialize the whole fixture (fixtures/NAME, models/NAME), once per binary.
	dir, sub := rel, ""
	if filepath.Base(rel) == "model" {
		dir, sub = filepath.Dir(rel), "model"
	}
	return filepath.Join(fixturetest.Dir(t, dir), sub)
}

// rewriteCheckpoint writes a copy of the checkpoint src into a new temporary
// directory: config.json and the other non-weight files as they are, and the
// tensors that edit returns (given src's tensors in name order) as one
// model.safetensors.
func rewriteCheckpoint(t *testing.T, src string, edit func([]*safetensors.Tensor) []*safetensors.Tensor) string {
	t.Helper()
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var ts []*safetensors.Tensor
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		ts = append(ts, tt)
	}
	ts = edit(ts)
	dst := t.TempDir()
	plan := make([]safetensors.Info, len(ts))
	for i, tt := range ts {
		plan[i] = safetensors.InfoOf(tt)
	}
	w, err := safetensors.NewDirWriter(dst, plan, safetensors.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if err := w.Write(tt.Name, tt.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	copyNonWeights(t, src, dst)
	return dst
}

// copyNonWeights copies config.json and the other non-weight files.
func copyNonWeights(t *testing.T, src, dst string) {
	t.Helper()
	if _, err := CopyExtraFiles(src, dst); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// newTensor makes an F32 tensor of the given shape filled with zeros.
func newTensor(t *testing.T, name string, shape ...int) *safetensors.Tensor {
	t.Helper()
	n := 4
	for _, d := range shape {
		n *= d
	}
	tt, err := safetensors.NewTensor(name, safetensors.F32, shape, make([]byte, n))
	if err != nil {
		t.Fatal(err)
	}
	return tt
}
