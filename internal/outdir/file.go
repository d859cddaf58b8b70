package outdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is an output file being written: a temporary sibling that Commit
// renames into place and Abort (or an interrupt, via Interrupt) removes.
type File struct {
	*os.File
	final string
	done  bool
}

// CreateFile prepares to write final. It refuses an existing final unless
// force is set (it is then replaced on Commit); final's directory must exist.
func CreateFile(final string, force bool) (*File, error) {
	final = filepath.Clean(final)
	if st, err := os.Stat(final); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("output %s is a directory", final)
		}
		if !force {
			return nil, fmt.Errorf("output %s exists (use --force to replace it)", final)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	parent := filepath.Dir(final)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("output %s: directory %s does not exist", final, parent)
	}
	f, err := os.CreateTemp(parent, "."+filepath.Base(final)+".tmp-")
	if err != nil {
		return nil, err
	}
	mu.Lock()
	pending[f.Name()] = true
	mu.Unlock()
	return &File{File: f, final: final}, nil
}

// Final is the name the file will have after Commit.
func (f *File) Final() string { return f.final }

// Commit syncs and closes the temporary file and renames it to its final
// name.
func (f *File) Commit() error {
	if f.done {
		return errors.New("output file already committed or aborted")
	}
	if err := f.Sync(); err != nil {
		f.Abort()
		return err
	}
	if err := f.Close(); err != nil {
		f.Abort()
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		f.Abort()
		return err
	}
	if err := os.Rename(f.Name(), f.final); err != nil {
		f.Abort()
		return err
	}
	f.finish()
	if parent, err := os.Open(filepath.Dir(f.final)); err == nil {
		parent.Sync()
		parent.Close()
	}
	return nil
}

// Abort closes and removes the temporary file; after Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.Close()
	os.Remove(f.Name())
	f.finish()
}

func (f *File) finish() {
	f.done = true
	mu.Lock()
	delete(pending, f.Name())
	mu.Unlock()
}

// CheckFree returns an error when the file system holding dir has less than
// need bytes available (where the platform can tell).
func CheckFree(dir string, need int64) error {
	avail, ok := freeBytes(dir)
	if ok && avail < need {
		return fmt.Errorf("%s: %d MB free, the output needs %d MB", dir, avail>>20, (need+1<<20-1)>>20)
	}
	return nil
}
