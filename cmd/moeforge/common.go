package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/moeforge/moeforge/internal/outdir"
	"github.com/moeforge/moeforge/internal/progress"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// openWithTokenizer opens the checkpoint dir and the tokenizer at tokPath
// (a tokenizer.json or a directory holding one; "" = dir's own). The
// caller closes the model.
func openWithTokenizer(dir, tokPath string) (*model.Model, *tokenizer.Tokenizer, error) {
	m, err := model.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	if tokPath == "" {
		tokPath = dir
	}
	tok, err := loadTokenizer(tokPath)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, tok, nil
}

// newBar returns a progress bar on stderr (drawn only on a terminal and
// without --quiet).
func newBar(label string, total int, unit string) *progress.Bar {
	return progress.New(os.Stderr, global.quiet, label, total, unit)
}

// The decimal units of scaled, for 1e3, 1e6 and 1e9: parameter counts and
// byte sizes.
var (
	countUnits = [3]string{"K", "M", "B"}
	byteUnits  = [3]string{"kB", "MB", "GB"}
)

// scaled is the one number formatter of the commands: n divided by the
// largest of 1e9, 1e6 and 1e3 it reaches, written with verb (e.g. "%.2f"),
// then sep and that scale's unit; below 1e3, n itself, then sep and small
// when small is set ("999 B").
func scaled(n int64, verb, sep string, units [3]string, small string) string {
	for i, scale := range []float64{1e9, 1e6, 1e3} {
		if float64(n) >= scale {
			return fmt.Sprintf(verb, float64(n)/scale) + sep + units[2-i]
		}
	}
	if small == "" {
		return fmt.Sprint(n)
	}
	return fmt.Sprint(n) + sep + small
}

// outputError adds the flag that overrides a refused output to an error of
// creating it.
func outputError(err error) error {
	if errors.Is(err, outdir.ErrNotEmpty) {
		return fmt.Errorf("%w (use --force to replace it)", err)
	}
	return err
}
