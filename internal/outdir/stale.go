package outdir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnerFile is written into every temporary directory Create makes: the
// PID of the process writing it and that process's start time, so that a
// later run can tell a directory left by a killed run (its owner gone) from
// one still being written. Commit removes it before the rename.
const OwnerFile = ".moeforge-owner"

// Report is told, one line each, about the temporary directories a killed
// run left beside an output (removed, or kept with their size). The
// default writes to standard error.
var Report = func(line string) { fmt.Fprintln(os.Stderr, "moeforge: "+line) }

// Stale is a temporary directory another run left beside an output.
type Stale struct {
	Path    string
	Bytes   int64
	PID     int  // its owner; 0 when unknown
	Removed bool // the owner is gone and the directory was removed
	// Why it was kept, when it was: "in use by PID n", "no owner recorded".
	Kept string
}

func (s Stale) String() string {
	if s.Removed {
		return fmt.Sprintf("removed %s (%s) left by a run that ended before finishing (PID %d)", s.Path, sizeString(s.Bytes), s.PID)
	}
	return fmt.Sprintf("%s (%s) is an unfinished output of another run (%s): left alone; remove it if no run is writing it", s.Path, sizeString(s.Bytes), s.Kept)
}

// CleanStale looks for the temporary directories of earlier runs beside
// final (.NAME.tmp-*, the names Create gives): those whose owner process is
// gone are removed; the others (still being written, holding a resume
// state (ResumePattern), or made by a moeforge that recorded no owner) are
// kept. Both are returned. Create
// calls it and tells Report.
func CleanStale(final string) []Stale {
	final = filepath.Clean(final)
	parent, prefix := filepath.Dir(final), "."+filepath.Base(final)+".tmp-"
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []Stale
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		path := filepath.Join(parent, e.Name())
		mu.Lock()
		ours := pending[path]
		mu.Unlock()
		if ours {
			continue
		}
		s := Stale{Path: path, Bytes: dirSize(path)}
		switch pid, start, ok := readOwner(path); {
		case strings.HasSuffix(e.Name(), ".old"):
			// The previous output, moved aside by Commit: it may be the only
			// copy if the run died before the rename, so it is only reported.
			s.Kept = "an output moved aside by a commit that did not finish"
		case resumable(path):
			s.PID, s.Kept = pid, "it holds a resume state: the same command with --resume continues it"
		case !ok:
			s.Kept = "no owner recorded"
		case ownerAlive(pid, start):
			s.PID, s.Kept = pid, fmt.Sprintf("in use by PID %d", pid)
		default:
			s.PID = pid
			if err := os.RemoveAll(path); err != nil {
				s.Kept = fmt.Sprintf("owner PID %d is gone but removing failed: %v", pid, err)
			} else {
				s.Removed = true
			}
		}
		out = append(out, s)
	}
	return out
}

// ResumePattern names the entries of a temporary directory that hold the
// state a later run resumes from (quantize's .moeforge-quantize-resume): a
// directory with one is never removed, whoever its owner was.
const ResumePattern = ".moeforge-*-resume"

func resumable(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, ResumePattern))
	return len(m) > 0
}

// writeOwner records this process as the owner of the temporary dir.
func writeOwner(dir string) error {
	pid := os.Getpid()
	return os.WriteFile(filepath.Join(dir, OwnerFile), []byte(fmt.Sprintf("pid %d start %s\n", pid, processStart(pid))), 0o644)
}

// readOwner reads a temporary directory's owner file.
func readOwner(dir string) (pid int, start string, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if err != nil {
		return 0, "", false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 || f[0] != "pid" {
		return 0, "", false
	}
	pid, err = strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	if len(f) >= 4 && f[2] == "start" {
		start = f[3]
	}
	return pid, start, true
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func sizeString(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
