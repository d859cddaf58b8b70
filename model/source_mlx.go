package model

import (
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/internal/gemm"
)

func init() { RegisterFormat("mlx", openMLX) }

// openMLX opens path as an MLX directory (formats/mlx) when it is one.
func openMLX(path string) (Source, bool, error) {
	if !mlx.IsDir(path) {
		return nil, false, nil
	}
	ck, err := mlx.Open(path)
	if err != nil {
		return nil, true, err
	}
	return mlxSource{ck}, true, nil
}

// mlxSource answers the forward pass's Hugging Face names from an MLX
// directory: stacked switch_mlp experts are sliced per expert, affine
// modules become gemm.Affine matrices.
type mlxSource struct{ ck *mlx.Checkpoint }

func (s mlxSource) Config() *hf.Config { return s.ck.Config }

func (s mlxSource) matrix(w mlx.Weight) (gemm.Matrix, error) {
	if w.Affine != nil {
		return *w.Affine, nil
	}
	return matrixOf(w.Float)
}

func (s mlxSource) Matrix(name string) (gemm.Matrix, error) {
	c := s.ck.Config
	if name != hf.EmbedTokens {
		t, err := s.ck.Tensor(name)
		if err != nil {
			return nil, err
		}
		return matrixOf(t)
	}
	w, err := s.ck.Module(strings.TrimSuffix(name, ".weight"), c.VocabSize, c.HiddenSize, -1, true)
	if err != nil {
		return nil, err
	}
	return s.matrix(w)
}

func (s mlxSource) Vector(name string) ([]float32, error) {
	t, err := s.ck.Tensor(name)
	if err != nil {
		return nil, err
	}
	return t.Float32()
}

func (s mlxSource) Linear(spec hf.Linear) (gemm.Matrix, []float32, error) {
	w, b, err := s.ck.Linear(spec)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.matrix(w)
	if err != nil {
		return nil, nil, err
	}
	var bias []float32
	if b != nil {
		if bias, err = b.Float32(); err != nil {
			return nil, nil, err
		}
	}
	return m, bias, nil
}

func (s mlxSource) Close() error { return s.ck.Close() }
