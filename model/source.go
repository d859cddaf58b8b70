package model

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/gemm"
)

// Source is where a model's weights come from: a Hugging Face checkpoint
// directory (HFSource), or another on-disk format whose package registers an
// opener with RegisterFormat (GGUF files, MLX directories). Every name a
// Source answers to is the Hugging Face one (formats/hf's naming): a source
// of another format maps its own tensor names, layouts and quantizations
// onto them, so the forward pass has one description of each architecture.
//
// Matrices are returned without copying where the stored form allows it;
// they stay valid until Close.
type Source interface {
	// Config is the model's typed config.json (for other formats, the
	// config their metadata describes).
	Config() *hf.Config
	// Matrix returns a 2-D weight such as the token embeddings [vocab, hidden].
	Matrix(name string) (gemm.Matrix, error)
	// Vector returns a 1-D float tensor such as a norm's weight.
	Vector(name string) ([]float32, error)
	// Linear returns the weight [Out, In] of a linear layer in whatever
	// stored form it has (float, GPTQ, a block quantization) and its bias
	// (nil when the layer has none).
	Linear(spec hf.Linear) (w gemm.Matrix, bias []float32, err error)
	// Close releases the source's memory maps.
	Close() error
}

// A FormatOpener opens path as a Source when it recognizes the format; ok is
// false (and err nil) when path is not of its format.
type FormatOpener func(path string) (src Source, ok bool, err error)

var (
	formatsMu sync.Mutex
	formats   []namedOpener
)

type namedOpener struct {
	name string
	open FormatOpener
}

// RegisterFormat adds an opener that OpenSource tries, in registration
// order, before treating path as a Hugging Face checkpoint directory.
func RegisterFormat(name string, open FormatOpener) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	formats = append(formats, namedOpener{name, open})
}

// OpenSource opens path with the first registered format that recognizes
// it, else as a Hugging Face checkpoint directory.
func OpenSource(path string) (Source, error) {
	formatsMu.Lock()
	fs := append([]namedOpener(nil), formats...)
	formatsMu.Unlock()
	for _, f := range fs {
		src, ok, err := f.open(path)
		if err != nil {
			return nil, err
		}
		if ok {
			return src, nil
		}
	}
	if st, err := os.Stat(path); err == nil && !st.IsDir() && filepath.Base(path) != "config.json" {
		return nil, fmt.Errorf("%s: not a checkpoint directory nor a model file of a known format", path)
	}
	ck, err := hf.Open(path)
	if err != nil {
		return nil, err
	}
	return hfSource{ck, true}, nil
}

// HFSource is the Source of an open Hugging Face checkpoint; closing it does
// not close ck (the caller owns it).
func HFSource(ck *hf.Checkpoint) Source { return hfSource{ck, false} }

type hfSource struct {
	ck    *hf.Checkpoint
	owned bool
}

func (s hfSource) Config() *hf.Config { return s.ck.Config }

func (s hfSource) Matrix(name string) (gemm.Matrix, error) {
	t, err := s.ck.Tensor(name)
	if err != nil {
		return nil, err
	}
	return matrixOf(t)
}

func (s hfSource) Vector(name string) ([]float32, error) {
	t, err := s.ck.Tensor(name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

func (s hfSource) Linear(spec hf.Linear) (gemm.Matrix, []float32, error) {
	lw, err := s.ck.Linear(spec)
	if err != nil {
		return nil, nil, err
	}
	var w gemm.Matrix
	if lw.Quantized() {
		w, err = int4Of(s.ck.Config, lw, spec)
	} else {
		w, err = matrixOf(lw.Weight)
	}
	if err != nil {
		return nil, nil, err
	}
	var bias []float32
	if lw.Bias != nil {
		if bias, err = lw.Bias.Float32(); err != nil {
			return nil, nil, err
		}
	}
	return w, bias, nil
}

func (s hfSource) Close() error {
	if !s.owned {
		return nil
	}
	return s.ck.Close()
}
