package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/moeforge/moeforge/internal/outdir"
	"github.com/moeforge/moeforge/internal/progress"
)

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// newBar returns a progress bar on stderr (drawn only on a terminal and
// without --quiet).
func newBar(label string, total int, unit string) *progress.Bar {
	return progress.New(os.Stderr, global.quiet, label, total, unit)
}

// outputError adds the flag that overrides a refused output to an error of
// creating it.
func outputError(err error) error {
	if errors.Is(err, outdir.ErrNotEmpty) {
		return fmt.Errorf("%w (use --force to replace it)", err)
	}
	return err
}
