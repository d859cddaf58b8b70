package hf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moeforge/moeforge/formats/safetensors"
)

func writerTensors(n int, fail int) []Tensor {
	var ts []Tensor
	for i := 0; i < n; i++ {
		i := i
		ts = append(ts, Tensor{Info: safetensors.Info{Name: fmt.Sprintf("t%d", i), DType: safetensors.F32, Shape: []int{4}},
			Produce: func() ([]byte, error) {
				if i == fail {
					return nil, errors.New("produce failed")
				}
				return make([]byte, 16), nil
			}})
	}
	return ts
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestWriterCommit: Create writes shards (pluggable names and format
// metadata), the index, config.json, other files and the copied extras into
// a hidden sibling, and Commit renames it into place.
func TestWriterCommit(t *testing.T) {
	parent := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "tokenizer.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(src, "model.safetensors"), []byte("x"), 0o644)
	final := filepath.Join(parent, "out")
	w, err := Create(final, false, WriterOptions{MaxShardSize: 32, Metadata: map[string]string{"format": "mlx"},
		ShardName: func(i, n int) string { return fmt.Sprintf("part-%d-of-%d.safetensors", i+1, n) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	var progress []int
	shards, err := w.WriteAll(context.Background(), writerTensors(5, -1), func(done, total int) { progress = append(progress, done) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"part-1-of-3.safetensors", "part-2-of-3.safetensors", "part-3-of-3.safetensors"}; !slices.Equal(shards, want) {
		t.Errorf("shards %v, want %v", shards, want)
	}
	if !slices.Equal(progress, []int{1, 2, 3, 4, 5}) {
		t.Errorf("progress %v", progress)
	}
	if err := w.WriteConfig(mustParseMap(t, tinyQwen2())); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("quantize_config.json", []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("../escape", nil); err == nil {
		t.Error("WriteFile accepted a path outside the checkpoint")
	}
	copied, err := w.CopyExtraFiles(src)
	if err != nil || !slices.Equal(copied, []string{"tokenizer.json"}) {
		t.Fatalf("copied %v, %v", copied, err)
	}
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("final directory exists before Commit: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"config.json", safetensors.IndexFile, "part-1-of-3.safetensors", "part-2-of-3.safetensors", "part-3-of-3.safetensors", "quantize_config.json", "tokenizer.json"}
	if got := dirNames(t, final); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	set, err := safetensors.OpenDir(final)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if len(set.Names()) != 5 || set.Files[0].Metadata["format"] != "mlx" {
		t.Errorf("tensors %v, metadata %v", set.Names(), set.Files[0].Metadata)
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Errorf("parent holds %v after Commit", got)
	}
}

// TestWriterAbort: a failing producer, and Abort, leave nothing behind; an
// existing output is refused without force.
func TestWriterAbort(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "out")
	w, err := Create(final, false, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAll(context.Background(), writerTensors(3, 1), nil); err == nil || err.Error() != "produce failed" {
		t.Fatalf("WriteAll = %v, want the producer's error", err)
	}
	w.Abort()
	if got := dirNames(t, parent); len(got) != 0 {
		t.Errorf("parent holds %v after Abort", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, _ = Create(final, false, WriterOptions{})
	if _, err := w.WriteAll(ctx, writerTensors(2, -1), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteAll with a cancelled context = %v", err)
	}
	w.Abort()
	os.MkdirAll(filepath.Join(final, "x"), 0o755)
	if _, err := Create(final, false, WriterOptions{}); err == nil {
		t.Error("Create accepted a non-empty output without force")
	}
}
