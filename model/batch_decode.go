package model

import (
	"context"
	"fmt"
)

// StepLogits runs one forward pass over several sequences at once, each
// continuing after its own KV cache: seqs[i] (a prompt, or the one token
// chosen last step) is appended to caches[i]. It returns the logits of the
// last position of every sequence, [len(seqs)][vocab].
//
// This is the decode step of continuous batching: the tokens of all
// sequences go through every linear layer (and each MoE expert) as one
// block, so B sequences cost about one matrix product per weight instead
// of B vector products; attention runs per sequence over its own cache.
// Prompts and single decode tokens may be mixed in one step.
func (m *Model) StepLogits(ctx context.Context, seqs [][]int, caches []*KVCache) ([][]float32, error) {
	if len(seqs) != len(caches) {
		return nil, fmt.Errorf("step: %d sequences but %d caches", len(seqs), len(caches))
	}
	for i, s := range seqs {
		if len(s) == 0 {
			return nil, fmt.Errorf("step: sequence %d has no tokens", i)
		}
	}
	x, err := m.Hidden(ctx, &Batch{Seqs: seqs, Caches: caches}, nil)
	if err != nil {
		return nil, err
	}
	h := m.Config.HiddenSize
	last := make([]float32, len(seqs)*h)
	row := 0
	for i, s := range seqs {
		row += len(s)
		copy(last[i*h:(i+1)*h], x[(row-1)*h:row*h])
	}
	vocab := m.LMHead.Out()
	flat := make([]float32, len(seqs)*vocab)
	m.LMHead.Forward(flat, last, len(seqs))
	out := make([][]float32, len(seqs))
	for i := range out {
		out[i] = flat[i*vocab : (i+1)*vocab : (i+1)*vocab]
	}
	return out, nil
}

// Truncate forgets the cached positions from n on, so that the sequence
// can continue after its first n tokens (a chat turn that shares a prefix
// with the previous prompt reuses that prefix's keys and values).
func (c *KVCache) Truncate(n int) {
	if n < c.Len {
		c.Len = max(n, 0)
	}
}
