package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateFile(t *testing.T) {
	parent := t.TempDir()
	final := filepath.Join(parent, "m.gguf")
	f, err := CreateFile(final, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one")
	if _, err := os.Stat(final); err == nil {
		t.Fatal("final name exists before Commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // no-op after Commit
	if b, _ := os.ReadFile(final); string(b) != "one" {
		t.Fatalf("committed content %q", b)
	}
	if _, err := CreateFile(final, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing output without force: %v", err)
	}
	// Aborted: the old file stays, nothing else is left.
	f, err = CreateFile(final, true)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("two")
	f.Abort()
	// Interrupted: Interrupt removes the temporary file.
	f, err = CreateFile(final, true)
	if err != nil {
		t.Fatal(err)
	}
	Interrupt()
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("%d entries left in the parent, want only the committed file", len(entries))
	}
	if b, _ := os.ReadFile(final); string(b) != "one" {
		t.Fatalf("aborted writes changed the committed file: %q", b)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Interrupt succeeded")
	}
	if _, err := CreateFile(filepath.Join(parent, "missing", "x"), false); err == nil {
		t.Error("missing parent accepted")
	}
	if _, err := CreateFile(parent, true); err == nil {
		t.Error("a directory accepted as output file")
	}
	if err := CheckFree(parent, 1<<62); err == nil {
		t.Error("CheckFree accepted 4 EiB")
	}
	if err := CheckFree(parent, 1); err != nil {
		t.Error(err)
	}
}
