//go:build unix

package safetensors

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Map memory-maps the first size bytes of fd read-only and returns the
// bytes and the function that unmaps them. Every format reader (safetensors,
// GGUF) maps its files through it.
func Map(fd *os.File, size int64) ([]byte, func() error, error) {
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: too large to map (%d bytes)", fd.Name(), size)
	}
	data, err := unix.Mmap(int(fd.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: mmap: %w", fd.Name(), err)
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
