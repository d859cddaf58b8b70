package model

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestAdviseKeepsHeapContents checks that the advice a layer-major pass
// gives keeps the contents of weights that live on the heap (copied or
// derived matrices), not only of memory-mapped ones: MADV_DONTNEED would
// zero them.
func TestAdviseKeepsHeapContents(t *testing.T) {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	for _, a := range []int{unix.MADV_WILLNEED, unix.MADV_COLD, unix.MADV_PAGEOUT} {
		advise(b, a)
		for i := range b {
			if b[i] != byte(i*7+1) {
				t.Fatalf("advice %d changed byte %d", a, i)
			}
		}
	}
	if memTotal() <= 0 {
		t.Error("MemTotal unknown")
	}
}
