//go:build !linux

package convert

// releasePages does nothing where MADV_PAGEOUT is not available.
func releasePages(b []byte) {}
