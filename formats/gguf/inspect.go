package gguf

import (
	"fmt"
	"sort"
	"strings"
)

// Report describes a GGUF file for `moeforge inspect`.
type Report struct {
	Path         string  `json:"path"`
	Format       string  `json:"format"` // "gguf"
	Version      uint32  `json:"version"`
	Architecture string  `json:"architecture"`
	Name         string  `json:"name,omitempty"`
	FileType     *uint64 `json:"file_type,omitempty"`
	Alignment    int     `json:"alignment"`
	Bytes        int64   `json:"bytes"`
	// Hyperparameters are the ARCH.* keys with scalar values.
	Hyperparameters map[string]any   `json:"hyperparameters"`
	Tokenizer       *TokenizerReport `json:"tokenizer,omitempty"`
	ChatTemplate    bool             `json:"chat_template"`
	Metadata        int              `json:"metadata"`
	Tensors         int              `json:"tensors"`
	Params          int64            `json:"params"`
	// TensorTypes counts tensors and elements per type.
	TensorTypes map[string]TypeCount `json:"tensor_types"`
}

// TokenizerReport summarizes the tokenizer.ggml.* keys.
type TokenizerReport struct {
	Model  string  `json:"model"`
	Pre    string  `json:"pre,omitempty"`
	Tokens int     `json:"tokens"`
	Merges int     `json:"merges"`
	BOS    *uint64 `json:"bos_token_id,omitempty"`
	EOS    *uint64 `json:"eos_token_id,omitempty"`
}

// TypeCount is how many tensors of a type there are and their elements.
type TypeCount struct {
	Tensors  int   `json:"tensors"`
	Elements int64 `json:"elements"`
}

// Inspect opens and validates the GGUF file at path and describes it.
func Inspect(path string) (*Report, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Report(), nil
}

// Report describes the file.
func (f *File) Report() *Report {
	r := &Report{Path: f.Path, Format: "gguf", Version: f.Version, Alignment: f.Alignment, Bytes: f.Size,
		Metadata: len(f.KVs), Tensors: len(f.Tensors), Hyperparameters: map[string]any{}, TensorTypes: map[string]TypeCount{}}
	r.Architecture, _ = f.String("general.architecture")
	r.Name, _ = f.String("general.name")
	if v, ok := f.Uint("general.file_type"); ok {
		r.FileType = &v
	}
	if r.Architecture != "" {
		for _, kv := range f.KVs {
			if k, ok := strings.CutPrefix(kv.Key, r.Architecture+"."); ok {
				if t, _, _ := typeOf(kv.Value); t != TypeArray {
					r.Hyperparameters[k] = kv.Value
				}
			}
		}
	}
	if m, ok := f.String("tokenizer.ggml.model"); ok {
		tr := &TokenizerReport{Model: m}
		tr.Pre, _ = f.String("tokenizer.ggml.pre")
		if v, ok := f.Get("tokenizer.ggml.tokens"); ok {
			if s, ok := v.([]string); ok {
				tr.Tokens = len(s)
			}
		}
		if v, ok := f.Get("tokenizer.ggml.merges"); ok {
			if s, ok := v.([]string); ok {
				tr.Merges = len(s)
			}
		}
		if v, ok := f.Uint("tokenizer.ggml.bos_token_id"); ok {
			tr.BOS = &v
		}
		if v, ok := f.Uint("tokenizer.ggml.eos_token_id"); ok {
			tr.EOS = &v
		}
		r.Tokenizer = tr
	}
	_, r.ChatTemplate = f.String("tokenizer.chat_template")
	for _, t := range f.Tensors {
		c := r.TensorTypes[t.Type.String()]
		c.Tensors++
		c.Elements += int64(t.NumElements())
		r.TensorTypes[t.Type.String()] = c
		r.Params += int64(t.NumElements())
	}
	return r
}

// HyperparameterKeys returns the report's hyperparameter keys sorted.
func (r *Report) HyperparameterKeys() []string {
	keys := make([]string, 0, len(r.Hyperparameters))
	for k := range r.Hyperparameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String formats a metadata value briefly.
func FormatValue(v any) string {
	switch x := v.(type) {
	case float32:
		return fmt.Sprintf("%g", x)
	case float64:
		return fmt.Sprintf("%g", x)
	case string:
		return fmt.Sprintf("%q", x)
	}
	return fmt.Sprint(v)
}
