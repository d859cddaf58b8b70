package main

import (
	"encoding/json"
	"io"
	"os"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/progress"
	"github.com/moeforge/moeforge/model"
)

// loadModel opens a checkpoint directory and builds its model. The caller
// closes the checkpoint when done with the model.
func loadModel(dir string) (*hf.Checkpoint, *model.Model, error) {
	ck, err := hf.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	m, err := model.Load(ck)
	if err != nil {
		ck.Close()
		return nil, nil, err
	}
	return ck, m, nil
}

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
