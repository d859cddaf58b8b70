// Package pages gives the kernel advice about memory-mapped inputs.
package pages

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = uintptr(os.Getpagesize())

// Release tells the kernel that the whole pages inside b (an input
// tensor's view of its memory-mapped file) will not be read again soon, so
// that they leave this process's resident set: without it a mapped input
// read once from end to end (convert, quantize) would count fully toward
// peak RSS by the end. MADV_PAGEOUT
// keeps the contents (they are read back from the file if used again), so
// it is safe whatever memory b lives in. Errors (kernels before 5.4) are
// ignored: the advice is only an optimization.
func Release(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	first := (start + pageSize - 1) &^ (pageSize - 1)
	last := (start + uintptr(len(b))) &^ (pageSize - 1)
	if last <= first {
		return
	}
	unix.Madvise(b[first-start:last-start], unix.MADV_PAGEOUT)
}
