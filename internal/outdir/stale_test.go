package outdir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	return cmd.Process.Pid
}

// TestStaleDirs leaves the temporary directories of four earlier runs
// beside an output: a killed one (owner gone), a running one (this
// process, not through Create), one whose PID was reused (start time
// differs), one from a moeforge that recorded no owner and a killed one
// holding quantize's resume state. Create removes the killed and reused
// ones and reports all five, with sizes.
func TestStaleDirs(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "out")
	mk := func(name, owner string, size int) string {
		dir := filepath.Join(parent, ".out.tmp-"+name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "model.safetensors"), make([]byte, size), 0o644)
		if owner != "" {
			os.WriteFile(filepath.Join(dir, OwnerFile), []byte(owner), 0o644)
		}
		return dir
	}
	killed := mk("killed", fmt.Sprintf("pid %d start 1\n", deadPID(t)), 3000)
	running := mk("running", fmt.Sprintf("pid %d start %s\n", os.Getpid(), processStart(os.Getpid())), 2000)
	reused := mk("reused", fmt.Sprintf("pid %d start 999999999999\n", os.Getpid()), 1000)
	legacy := mk("legacy", "", 5_000_000)
	resumeOwner := fmt.Sprintf("pid %d start 1\n", deadPID(t))
	resume := mk("resume", resumeOwner, 10)
	os.Mkdir(filepath.Join(resume, ".moeforge-quantize-resume"), 0o700)
	other := filepath.Join(parent, ".other.tmp-1") // another output's: not looked at
	os.Mkdir(other, 0o700)

	var lines []string
	old := Report
	Report = func(l string) { lines = append(lines, l) }
	defer func() { Report = old }()
	d, err := Create(final, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abort()

	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for p, want := range map[string]bool{killed: false, reused: false, running: true, legacy: true, resume: true, other: true} {
		if exists(p) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(p), !want, want)
		}
	}
	report := strings.Join(lines, "\n")
	for _, want := range []string{
		"removed " + killed + " (3.0 kB)", "removed " + reused + " (1.0 kB)",
		running + " (2.0 kB) is an unfinished output of another run (in use by PID",
		legacy + " (5.0 MB) is an unfinished output of another run (no owner recorded)",
		fmt.Sprintf("%s (%d B) is an unfinished output of another run (it holds a resume state: the same command with --resume continues it)", resume, 10+len(resumeOwner)),
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if len(lines) != 5 {
		t.Errorf("%d report lines, want 5:\n%s", len(lines), report)
	}

	// This run's own directory records its owner until Commit, and a second
	// Create in the same process leaves it alone.
	pid, start, ok := readOwner(d.Path())
	if !ok || pid != os.Getpid() || start != processStart(pid) {
		t.Errorf("owner of %s = %d %q %v, want this process", d.Path(), pid, start, ok)
	}
	lines = nil
	d2, err := Create(final, false)
	if err != nil {
		t.Fatal(err)
	}
	d2.Abort()
	if !exists(d.Path()) || strings.Contains(strings.Join(lines, "\n"), d.Path()) {
		t.Errorf("a second Create touched or reported the first one's directory: %v", lines)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(final, OwnerFile)) {
		t.Errorf("%s left in the committed output", OwnerFile)
	}
}
