package export

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gguf"
)

// TestRopePermutation: the row order llama.cpp's converter gives q/k of a
// NORM-rope model (numpy: reshape(heads, 2, hd/2, in).swapaxes(1, 2)).
func TestRopePermutation(t *testing.T) {
	perm := ropePermutation(2, 4)
	var got []int
	for r := 0; r < 8; r++ {
		got = append(got, perm(r))
	}
	if diff := cmp.Diff([]int{0, 2, 1, 3, 4, 6, 5, 7}, got); diff != "" {
		t.Error(diff)
	}
	x := []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if diff := cmp.Diff([]float32{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}, permuteRows(x, 8, 2, perm)); diff != "" {
		t.Error(diff)
	}
}

// TestMatrixTypeFallback: a matrix whose rows are not whole Q4_0 blocks is
// written F16 and listed.
func TestMatrixTypeFallback(t *testing.T) {
	b := &builder{p: &GGUFPlan{}, typ: gguf.Q4_0}
	if got := b.matrixType("a", 64); got != gguf.Q4_0 {
		t.Errorf("64 inputs: %s", got)
	}
	if got := b.matrixType("b", 48); got != gguf.F16 {
		t.Errorf("48 inputs: %s", got)
	}
	if diff := cmp.Diff([]string{"b"}, b.p.summary.Fallback); diff != "" {
		t.Error(diff)
	}
}

// TestGGUFEntryPoint: GGUF writes the bytes PlanGGUF and Write produce,
// refuses an existing output without Force, stops on a cancelled context,
// and leaves nothing behind when it fails.
func TestGGUFEntryPoint(t *testing.T) {
	src := materialized(t, "fixtures/mixtral_tiny/model")
	want, _ := exportFile(t, src, GGUFOptions{Type: gguf.F16, TypeSet: true})
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	calls := 0
	opt := GGUFOptions{Type: gguf.F16, TypeSet: true, Progress: func(done, total int) { calls++ }}
	sum, err := GGUF(context.Background(), src, out, opt)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Out != out || calls != sum.Tensors || fileSHA256(t, out) != fileSHA256(t, want) {
		t.Errorf("summary out %q, %d progress calls for %d tensors; same bytes as PlanGGUF+Write: %v", sum.Out, calls, sum.Tensors, fileSHA256(t, out) == fileSHA256(t, want))
	}
	if _, err := GGUF(context.Background(), src, out, GGUFOptions{}); err == nil || !contains(err.Error(), "--force") {
		t.Errorf("existing output without Force: %v", err)
	}
	if _, err := GGUF(context.Background(), src, out, GGUFOptions{Force: true}); err != nil {
		t.Errorf("Force: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := GGUF(ctx, src, filepath.Join(dir, "c.gguf"), GGUFOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in %s: %v, want only m.gguf", dir, entries)
	}
}
