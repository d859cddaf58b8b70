//go:build !unix

package gguf

import (
	"io"
	"os"
)

// mmap falls back to reading the file where memory maps are not available.
func mmap(fd *os.File, size int64) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(fd, data); err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
