package verify

import (
	"fmt"
	"math"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// IDsTensor is the tensor ReadIDs looks for first, the name transformers
// uses (and the fixtures' reference.safetensors holds).
const IDsTensor = "input_ids"

// ReadIDs reads token sequences from a safetensors file: the tensor
// "input_ids", or the file's only tensor, of dtype I64 or I32 and shape
// [N, T] (or [T] for one sequence).
func ReadIDs(path string) ([][]int, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(IDsTensor)
	if !ok {
		ts := f.Tensors()
		if len(ts) != 1 {
			return nil, fmt.Errorf("%s: no tensor %q and %d tensors to choose from; want input_ids [N, T] of I64 or I32", path, IDsTensor, len(ts))
		}
		t = ts[0]
	}
	seqs, err := t.TokenIDs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, seq := range seqs {
		for j, v := range seq {
			if v < 0 || v > math.MaxInt32 {
				return nil, fmt.Errorf("%s: tensor %s[%d, %d] = %d is not a token id", path, t.Name, i, j, v)
			}
		}
	}
	return seqs, nil
}

// CheckIDs rejects sequences a model with this vocabulary and context
// length (maxPos; 0 = unlimited) cannot run, naming the first offending
// sequence and position.
func CheckIDs(seqs [][]int, vocab, maxPos int) error {
	if len(seqs) == 0 {
		return fmt.Errorf("no sequences to compare")
	}
	for i, s := range seqs {
		if len(s) == 0 {
			return fmt.Errorf("sequence %d is empty", i)
		}
		if maxPos > 0 && len(s) > maxPos {
			return fmt.Errorf("sequence %d has %d tokens, beyond max_position_embeddings=%d", i, len(s), maxPos)
		}
		for j, id := range s {
			if id < 0 || id >= vocab {
				return fmt.Errorf("sequence %d, position %d: token id %d outside the vocabulary [0, %d)", i, j, id, vocab)
			}
		}
	}
	return nil
}
