package verify

import "fmt"

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
