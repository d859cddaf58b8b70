// Package outdir creates output directories atomically: everything is written
// into a temporary sibling directory that is renamed into place only when the
// work succeeded, and removed on error or interrupt.
package outdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// ErrNotEmpty is matched by Create's error for an existing non-empty output
// without force (the command line adds how to override it).
var ErrNotEmpty = errors.New("is not empty")

// Dir is an output directory being written.
type Dir struct {
	final string
	tmp   string
	force bool
	done  bool
}

var (
	mu      sync.Mutex
	pending = map[string]bool{}
	// preserved maps a pending directory to its resume state (Preserve);
	// interrupted is set by Interrupt.
	preserved   = map[string]string{}
	interrupted bool
)

// Create prepares an output directory for final. It refuses an existing
// non-empty final unless force is set (the old content is replaced on Commit).
// final's parent directory must exist. Temporary directories of earlier
// runs beside final are removed when their owner is gone, else reported
// with their size (CleanStale, Report).
func Create(final string, force bool) (*Dir, error) {
	final = filepath.Clean(final)
	if st, err := os.Stat(final); err == nil {
		if !st.IsDir() {
			return nil, fmt.Errorf("output %s exists and is not a directory", final)
		}
		entries, err := os.ReadDir(final)
		if err != nil {
			return nil, err
		}
		if len(entries) > 0 && !force {
			return nil, fmt.Errorf("output directory %s exists and %w", final, ErrNotEmpty)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	parent := filepath.Dir(final)
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("output %s: parent directory %s does not exist", final, parent)
	}
	for _, s := range CleanStale(final) {
		Report(s.String())
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".tmp-")
	if err != nil {
		return nil, err
	}
	if err := writeOwner(tmp); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	mu.Lock()
	pending[tmp] = true
	mu.Unlock()
	return &Dir{final: final, tmp: tmp, force: force}, nil
}

// Leftovers lists the temporary directories that earlier Creates of final
// left behind (a killed process never renamed or removed them), newest
// first; the temporary directories of this process are not included.
func Leftovers(final string) ([]string, error) {
	final = filepath.Clean(final)
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".tmp-*"))
	if err != nil {
		return nil, err
	}
	type dir struct {
		path string
		mod  int64
	}
	var dirs []dir
	mu.Lock()
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.IsDir() && !pending[m] && filepath.Ext(m) != ".old" {
			dirs = append(dirs, dir{m, st.ModTime().UnixNano()})
		}
	}
	mu.Unlock()
	sort.SliceStable(dirs, func(a, b int) bool { return dirs[a].mod > dirs[b].mod })
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = d.path
	}
	return out, nil
}

// Path is the temporary directory to write into.
func (d *Dir) Path() string { return d.tmp }

// Final is the directory the output will have after Commit.
func (d *Dir) Final() string { return d.final }

// Commit syncs the temporary directory and renames it to its final name.
func (d *Dir) Commit() error {
	if d.done {
		return errors.New("output directory already committed or aborted")
	}
	if err := os.Remove(filepath.Join(d.tmp, OwnerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if f, err := os.Open(d.tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Chmod(d.tmp, 0o755); err != nil {
		return err
	}
	var old string
	if _, err := os.Stat(d.final); err == nil {
		// Empty or --force: move the old directory aside first.
		old = d.tmp + ".old"
		if err := os.Rename(d.final, old); err != nil {
			return err
		}
	}
	if err := os.Rename(d.tmp, d.final); err != nil {
		if old != "" {
			os.Rename(old, d.final)
		}
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	d.finish()
	if parent, err := os.Open(filepath.Dir(d.final)); err == nil {
		parent.Sync()
		parent.Close()
	}
	return nil
}

// Abort removes the temporary directory. It is safe to call after Commit
// (it then does nothing), so callers can defer it. After Interrupt, a
// directory holding a preserved resume state keeps that state (only).
func (d *Dir) Abort() {
	if d.done {
		return
	}
	mu.Lock()
	keep := ""
	if interrupted {
		keep = preserved[d.tmp]
	}
	mu.Unlock()
	removeExcept(d.tmp, keep)
	d.finish()
}

func (d *Dir) finish() {
	d.done = true
	mu.Lock()
	delete(pending, d.tmp)
	delete(preserved, d.tmp)
	mu.Unlock()
}

// Preserve marks path, an entry of a pending temporary directory whose name
// matches ResumePattern, as the state a later run resumes from: when the
// command is interrupted (Interrupt), the rest of the directory is removed
// and path is kept, so that the same command with --resume continues. A
// path outside every pending directory is ignored. Commit and an Abort
// without Interrupt remove it like everything else.
func Preserve(path string) {
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	if ok, _ := filepath.Match(ResumePattern, filepath.Base(path)); !ok {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if pending[dir] {
		preserved[dir] = path
	}
}

// Interrupt is what the command line calls on SIGINT/SIGTERM before it
// exits: every temporary directory not yet committed or aborted is
// removed, except the preserved resume states (Preserve), which stay in
// their temporary directory for a later --resume; their directories are
// returned. From then on Abort keeps them too.
func Interrupt() (kept []string) {
	mu.Lock()
	defer mu.Unlock()
	interrupted = true
	for tmp := range pending {
		if keep := preserved[tmp]; keep != "" {
			removeExcept(tmp, keep)
			kept = append(kept, tmp)
		} else {
			os.RemoveAll(tmp)
		}
		delete(pending, tmp)
	}
	sort.Strings(kept)
	return kept
}

// removeExcept removes dir, or, when keep (an entry of dir) is set,
// everything in dir but keep and the owner file.
func removeExcept(dir, keep string) {
	if keep == "" {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if p != keep && e.Name() != OwnerFile {
			os.RemoveAll(p)
		}
	}
}

// TempDir creates a scratch directory under the system temporary directory
// that is removed by the returned function, and by Interrupt.
func TempDir(prefix string) (string, func(), error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	mu.Lock()
	pending[dir] = true
	mu.Unlock()
	return dir, func() {
		os.RemoveAll(dir)
		mu.Lock()
		delete(pending, dir)
		mu.Unlock()
	}, nil
}

// WriteFile has write produce a single file in a temporary directory beside
// path (registered like Create's, so an interrupt removes it) and renames it
// to path only when write succeeded. An existing file at path is replaced.
func WriteFile(path string, write func(tmp string) error) error {
	dir, err := Create(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial"), true)
	if err != nil {
		return err
	}
	defer dir.Abort()
	tmp := filepath.Join(dir.Path(), filepath.Base(path))
	if err := write(tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
