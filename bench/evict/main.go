// Command evict drops files from the page cache, so that the next read of a
// model comes from the disk — what `echo 3 > /proc/sys/vm/drop_caches` does
// for the whole machine, without root and for the named files only (clean
// pages are evicted with posix_fadvise(POSIX_FADV_DONTNEED); dirty pages are
// written first with fsync). Each argument is a file or a directory (walked
// recursively). It prints how much of the files was resident before and
// after (mincore).
//
//	go run ./bench/evict DIR...
//
// Used by bench/scale.sh; not part of go test.
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: evict PATH...")
		os.Exit(2)
	}
	var total, before, after int64
	for _, root := range os.Args[1:] {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			size, was, now, err := evict(path)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			total, before, after = total+size, before+was, after+now
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "evict:", err)
			os.Exit(2)
		}
	}
	fmt.Printf("evict: %.2f GB in files, %.2f GB resident before, %.2f GB after\n",
		float64(total)/1e9, float64(before)/1e9, float64(after)/1e9)
}

// evict drops path's pages and returns its size and its resident bytes
// before and after.
func evict(path string) (size, before, after int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	size = st.Size()
	if before, err = resident(f, size); err != nil {
		return size, 0, 0, err
	}
	if err := f.Sync(); err != nil && err != unix.EINVAL {
		return size, before, 0, err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return size, before, 0, err
	}
	after, err = resident(f, size)
	return size, before, after, err
}

// resident counts the bytes of f that are in the page cache.
func resident(f *os.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	page := int64(os.Getpagesize())
	var n int64
	// Map and probe in 1 GiB windows (address space stays small).
	const window = 1 << 30
	vec := make([]byte, window/page)
	for off := int64(0); off < size; off += window {
		l := min(window, size-off)
		m, err := unix.Mmap(int(f.Fd()), off, int(l), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return 0, err
		}
		pages := (l + page - 1) / page
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(l), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			unix.Munmap(m)
			return 0, e
		}
		for _, v := range vec[:pages] {
			if v&1 != 0 {
				n += page
			}
		}
		unix.Munmap(m)
	}
	return min(n, size), nil
}
