// Package verify compares two models on the same tokens: the parity metrics
// of ALGORITHMS.md §5 (logit differences, KL divergence, top-1 agreement,
// perplexity), thresholds and reports, and the text windows of the
// evaluation protocol (§4).
package verify

import (
	"fmt"
	"math/rand/v2"
)

// SplitText splits a corpus by characters at fraction at (0.9 in the
// protocol): the calibration part text[:int(at·len)] and the evaluation part.
// Lengths count bytes, which equal characters for ASCII corpora such as
// tinyshakespeare; a split inside a UTF-8 sequence moves back to the
// sequence's start.
func SplitText(text string, at float64) (calib, eval string, err error) {
	if at < 0 || at > 1 {
		return "", "", fmt.Errorf("split fraction %g must be in [0, 1]", at)
	}
	cut := int(at * float64(len(text)))
	for cut > 0 && cut < len(text) && text[cut]&0xc0 == 0x80 {
		cut--
	}
	return text[:cut], text[cut:], nil
}

// EvalWindows returns the first n consecutive, non-overlapping windows of
// seqlen tokens. It fails when the tokens do not fill n windows.
func EvalWindows(tokens []int, n, seqlen int) ([][]int, error) {
	if n <= 0 || seqlen < 2 {
		return nil, fmt.Errorf("need at least one window of at least 2 tokens (windows=%d, seqlen=%d)", n, seqlen)
	}
	if len(tokens) < n*seqlen {
		return nil, fmt.Errorf("%d evaluation tokens fill only %d windows of %d, want %d", len(tokens), len(tokens)/seqlen, seqlen, n)
	}
	out := make([][]int, n)
	for i := range out {
		out[i] = tokens[i*seqlen : (i+1)*seqlen]
	}
	return out, nil
}

// RandomWindows draws n windows of seqlen tokens at random start positions
// (seeded, reproducible), as GPTQ calibration does.
func RandomWindows(tokens []int, n, seqlen int, seed uint64) ([][]int, error) {
	if n <= 0 || seqlen < 1 {
		return nil, fmt.Errorf("need at least one window of at least 1 token (windows=%d, seqlen=%d)", n, seqlen)
	}
	if len(tokens) < seqlen {
		return nil, fmt.Errorf("%d tokens are fewer than one window of %d", len(tokens), seqlen)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d6f65666f726765))
	out := make([][]int, n)
	for i := range out {
		start := rng.IntN(len(tokens) - seqlen + 1)
		out[i] = tokens[start : start+seqlen]
	}
	return out, nil
}

// RandomIDs draws n sequences of seqlen token ids uniformly from [0, vocab), seeded.
func RandomIDs(n, seqlen, vocab int, seed uint64) [][]int {
	rng := rand.New(rand.NewPCG(seed, 0x72616e646f6d6964))
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, seqlen)
		for j := range out[i] {
			out[i][j] = rng.IntN(vocab)
		}
	}
	return out
}
