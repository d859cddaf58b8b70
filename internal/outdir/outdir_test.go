package outdir

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCommitAndAbort(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "out")

	d, err := Create(final, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Path(), "a"), []byte("x"), 0o644)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	d.Abort() // no-op after commit
	if _, err := os.Stat(filepath.Join(final, "a")); err != nil {
		t.Fatalf("committed file missing: %v", err)
	}

	if _, err := Create(final, false); err == nil {
		t.Fatal("non-empty output accepted without force")
	}

	d, err = Create(final, true)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Path(), "b"), []byte("y"), 0o644)
	d.Abort()
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Fatalf("abort left %d entries in the parent, want only the committed output", len(entries))
	}
	if _, err := os.Stat(filepath.Join(final, "a")); err != nil {
		t.Fatal("abort touched the existing output")
	}

	d, _ = Create(final, true)
	os.WriteFile(filepath.Join(d.Path(), "c"), []byte("z"), 0o644)
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(final, "a")); err == nil {
		t.Fatal("--force commit kept the old content")
	}

	d, _ = Create(filepath.Join(parent, "other"), false)
	Interrupt()
	if _, err := os.Stat(d.Path()); !os.IsNotExist(err) {
		t.Fatal("Interrupt left the temporary directory")
	}
	if _, err := Create(filepath.Join(parent, "missing", "x"), false); err == nil {
		t.Fatal("missing parent accepted")
	}
}

func TestWriteFile(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "f.bin")
	if err := WriteFile(path, func(tmp string) error { return os.WriteFile(tmp, []byte("ok"), 0o600) }); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "ok" {
		t.Fatalf("read back %q, %v", b, err)
	}
	fail := os.ErrInvalid
	if err := WriteFile(filepath.Join(parent, "g.bin"), func(tmp string) error {
		os.WriteFile(tmp, []byte("partial"), 0o644)
		return fail
	}); err != fail {
		t.Fatalf("WriteFile = %v, want the write error", err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 || entries[0].Name() != "f.bin" {
		t.Errorf("parent holds %v after a failed write", entries)
	}
}

// TestLeftovers lists the temporary directories a killed run left beside
// an output, newest first, without this process's own or other outputs'.
func TestLeftovers(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "out")
	old := filepath.Join(parent, ".out.tmp-1")
	newer := filepath.Join(parent, ".out.tmp-2")
	for _, d := range []string{old, newer, filepath.Join(parent, ".other.tmp-3")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	mine, err := Create(final, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Abort()
	got, err := Leftovers(final)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != newer || got[1] != old {
		t.Errorf("Leftovers = %v, want [%s %s]", got, newer, old)
	}
}

// TestInterruptKeepsResumeState: an interrupt removes a pending directory
// except the resume state Preserve marked in it (and the owner file, so a
// later run knows whose it was); an Abort racing with the interrupt keeps
// it too; a state that was never preserved, a name that is not a resume
// state and a directory that is not pending are not kept.
func TestInterruptKeepsResumeState(t *testing.T) {
	parent := t.TempDir()
	write := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept, _ := Create(filepath.Join(parent, "gptq"), false)
	state := filepath.Join(kept.Path(), ".moeforge-quantize-resume")
	write(filepath.Join(state, "state.json"))
	write(filepath.Join(kept.Path(), "model-00001-of-00002.safetensors"))
	Preserve(state)
	plain, _ := Create(filepath.Join(parent, "other"), false)
	write(filepath.Join(plain.Path(), ".moeforge-quantize-resume", "state.json"))
	wrong, _ := Create(filepath.Join(parent, "third"), false)
	write(filepath.Join(wrong.Path(), "notes", "state.json"))
	Preserve(filepath.Join(wrong.Path(), "notes"))
	Preserve(filepath.Join(parent, "elsewhere", ".moeforge-quantize-resume"))

	got := Interrupt()
	if want := []string{kept.Path()}; !cmp.Equal(got, want) {
		t.Errorf("Interrupt kept %v, want %v", got, want)
	}
	kept.Abort() // the command returning with the context's error
	entries, err := os.ReadDir(kept.Path())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".moeforge-owner", ".moeforge-quantize-resume"}; !cmp.Equal(names, want) {
		t.Errorf("left in the interrupted directory: %v, want %v", names, want)
	}
	if _, err := os.Stat(filepath.Join(state, "state.json")); err != nil {
		t.Errorf("resume state: %v", err)
	}
	for _, d := range []*Dir{plain, wrong} {
		if _, err := os.Stat(d.Path()); !os.IsNotExist(err) {
			t.Errorf("%s: not removed (%v)", d.Path(), err)
		}
	}
	// A later run finds it as a resumable leftover and leaves it alone.
	for _, s := range CleanStale(filepath.Join(parent, "gptq")) {
		if s.Removed {
			t.Errorf("CleanStale removed %s", s.Path)
		}
	}
}
