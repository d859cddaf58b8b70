//go:build !unix

package safetensors

import (
	"io"
	"os"
)

// Map falls back to reading the file where memory maps are not available.
func Map(fd *os.File, size int64) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(fd, data); err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
