package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/export"
	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/tokenizer"
)

// loadTokenizer loads the tokenizer of path: a GGUF file's own tokenizer.*
// metadata, else tokenizer.json (path is that file or a directory with it).
func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if export.IsGGUF(path) {
		return export.GGUFTokenizer(path)
	}
	return tokenizer.Load(path)
}

// isGGUF reports whether path is a file named *.gguf or starting with the
// GGUF magic.
func isGGUF(path string) bool {
	if strings.HasSuffix(strings.ToLower(path), ".gguf") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.IsDir() {
		return false
	}
	magic := make([]byte, 4)
	n, _ := f.Read(magic)
	return n == 4 && string(magic) == gguf.Magic
}

func inspectGGUF(cmd *cobra.Command, path string, asJSON bool) error {
	r, err := gguf.Inspect(path)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), r)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	row := func(key, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", key, fmt.Sprintf(format, args...)) }
	row("path", "%s", r.Path)
	row("format", "GGUF v%d, alignment %d, %s", r.Version, r.Alignment, humanBytes(r.Bytes))
	row("architecture", "%s", r.Architecture)
	if r.Name != "" {
		row("name", "%s", r.Name)
	}
	if r.FileType != nil {
		row("file type", "%d", *r.FileType)
	}
	for i, k := range r.HyperparameterKeys() {
		key := ""
		if i == 0 {
			key = "hyperparameters"
		}
		row(key, "%s = %s", k, gguf.FormatValue(r.Hyperparameters[k]))
	}
	if t := r.Tokenizer; t != nil {
		row("tokenizer", "%s (pre %s), %d tokens, %d merges", t.Model, t.Pre, t.Tokens, t.Merges)
	}
	row("chat template", "%s", map[bool]string{true: "yes", false: "no"}[r.ChatTemplate])
	row("parameters", "%s (%s)", groupDigits(r.Params), humanCount(r.Params))
	types := make([]string, 0, len(r.TensorTypes))
	for t := range r.TensorTypes {
		types = append(types, t)
	}
	slices.Sort(types)
	for i, t := range types {
		key := ""
		if i == 0 {
			key = fmt.Sprintf("tensors (%d)", r.Tensors)
		}
		c := r.TensorTypes[t]
		row(key, "%s: %d tensors, %s elements", t, c.Tensors, groupDigits(c.Elements))
	}
	return tw.Flush()
}
