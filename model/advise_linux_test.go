package model

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

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
	check := func(what string) {
		for i := range b {
			if b[i] != byte(i*7+1) {
				t.Fatalf("%s changed byte %d", what, i)
			}
		}
	}
	for _, a := range []int{unix.MADV_COLD, unix.MADV_PAGEOUT} {
		advise(b, a)
		check("advice")
	}
	populate(b)
	check("populate")
	if memTotal() <= 0 {
		t.Error("MemTotal unknown")
	}
}

// TestPopulateReadsTheFile: prefetch must bring a whole range of a mapped
// file into memory — MADV_WILLNEED brings only one readahead window — both
// with MADV_POPULATE_READ and with the page-touching fallback.
func TestPopulateReadsTheFile(t *testing.T) {
	const size = 48 << 20 // several readahead windows and populate chunks
	path := filepath.Join(t.TempDir(), "w.bin")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i>>12 + 1)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	defer noPopulate.Store(noPopulate.Load())
	for _, fallback := range []bool{false, true} {
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		if r := resident(t, m); r > size/4 {
			unix.Munmap(m)
			t.Skipf("the page cache keeps the file (%d of %d bytes resident after FADV_DONTNEED)", r, size)
		}
		noPopulate.Store(fallback)
		populate(m)
		if r := resident(t, m); r < size-int(pageSize) {
			t.Errorf("fallback %v: %d of %d bytes resident after populate", fallback, r, size)
		}
		if m[size-1] != data[size-1] {
			t.Error("mapped contents differ from the file")
		}
		unix.Munmap(m)
	}
}

// resident counts the bytes of m in memory (mincore).
func resident(t *testing.T, m []byte) int {
	t.Helper()
	vec := make([]byte, (len(m)+int(pageSize)-1)/int(pageSize))
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v&1) * int(pageSize)
	}
	return n
}
