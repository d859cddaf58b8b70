package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCorruptInputError: malformed files and indexes give errors that match
// ErrFormat and name the file; a missing file does not.
func TestCorruptInputError(t *testing.T) {
	for _, data := range [][]byte{{1, 2, 3}, {8, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, {2, 0, 0, 0, 0, 0, 0, 0, '[', ']'}} {
		_, err := Parse("x.safetensors", data)
		var ce *CorruptInputError
		if !errors.Is(err, ErrFormat) || !errors.As(err, &ce) || ce.File != "x.safetensors" {
			t.Errorf("Parse(%q) = %v; want a CorruptInputError for x.safetensors", data, err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); !errors.Is(err, ErrFormat) {
		t.Errorf("OpenDir with an empty weight_map = %v; want ErrFormat", err)
	}
	if _, err := OpenDir(filepath.Join(dir, "none")); err == nil || errors.Is(err, ErrFormat) {
		t.Errorf("OpenDir of a missing directory = %v; want an error that is not ErrFormat", err)
	}
}
