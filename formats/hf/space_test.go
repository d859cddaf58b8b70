package hf

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestWriterRefusesWithoutSpace checks that a checkpoint larger than the
// free space is refused before any tensor is produced, with a message
// naming the output and both sizes, and that nothing is left behind.
func TestWriterRefusesWithoutSpace(t *testing.T) {
	parent := t.TempDir()
	tensors := writerTensors(10, -1) // 10 × 16 bytes + headers
	need := int64(10 * (16 + headerAllowance))
	for _, c := range []struct {
		free int64
		ok   bool
	}{{need - 1, false}, {need, true}, {-1, true}} {
		old := freeBytes
		freeBytes = func(string) (int64, error) { return c.free, nil }
		produced := 0
		ts := append([]Tensor(nil), tensors...)
		for i := range ts {
			p := ts[i].Produce
			ts[i].Produce = func() ([]byte, error) { produced++; return p() }
		}
		w, err := Create(parent+"/out", true, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.WriteAll(context.Background(), ts, nil)
		w.Abort()
		freeBytes = old
		if c.ok {
			if err != nil {
				t.Errorf("free %d: %v", c.free, err)
			}
			continue
		}
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "2.7 kB") || !strings.Contains(err.Error(), "2.7 kB free") {
			t.Errorf("free %d: err = %v, want ErrNoSpace naming 2.7 kB needed and free", c.free, err)
		}
		if produced != 0 {
			t.Errorf("free %d: %d tensors produced before the refusal", c.free, produced)
		}
		if names := dirNames(t, parent); len(names) != 0 {
			t.Errorf("free %d: left behind %v", c.free, names)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{999: "999 B", 1000: "1.0 kB", 28_600_000_000: "28.6 GB", 3_700_000_000_000: "3.7 TB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
