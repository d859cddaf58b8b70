//go:build !linux

package pages

// Release does nothing where MADV_PAGEOUT is not available.
func Release(b []byte) {}
