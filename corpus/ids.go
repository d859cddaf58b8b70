package corpus

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// IDsTensor is the tensor ReadIDs looks for, the name transformers uses
// (and the fixtures' reference.safetensors holds).
const IDsTensor = "input_ids"

// IDsRule says which tensor of a file ReadIDs takes.
type IDsRule int

const (
	// InputIDs takes the tensor input_ids of shape [N, T] only.
	InputIDs IDsRule = iota
	// AnyIDs takes input_ids, else the file's only tensor, of shape
	// [N, T] or [T] (one sequence).
	AnyIDs
)

// ReadIDs reads token sequences from a safetensors file, the other source
// of windows besides text: a tensor of dtype I64 or I32 chosen by rule.
// Every id must be a token id (in [0, 2³¹)); whether it fits a model's
// vocabulary is the caller's check. Errors name the file.
func ReadIDs(path string, rule IDsRule) ([][]int, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(IDsTensor)
	switch {
	case !ok && rule == AnyIDs && len(f.Tensors()) == 1:
		t = f.Tensors()[0]
	case !ok && rule == AnyIDs:
		return nil, fmt.Errorf("%s: no tensor %q and %d tensors to choose from; want input_ids [N, T] of I64 or I32", path, IDsTensor, len(f.Tensors()))
	case !ok:
		var names []string
		for _, t := range f.Tensors() {
			names = append(names, t.Name)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%s: no tensor input_ids (want input_ids [N, T] of I64 or I32; the file has %v)", path, names)
	case rule == InputIDs && len(t.Shape) != 2:
		return nil, fmt.Errorf("%s: tensor input_ids has shape %v, want [N, T] with N, T ≥ 1", path, t.Shape)
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
