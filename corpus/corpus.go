// Package corpus is the evaluation protocol of ALGORITHMS.md §4 and the
// calibration windows: a text is split by characters into a calibration part
// and an evaluation part, each tokenized as one string, and cut into windows
// that each start a sequence at position 0. Every command that evaluates,
// verifies or calibrates on text takes its windows from here.
package corpus

import (
	"fmt"
	"math/rand/v2"
)

// The protocol's defaults: calibration is the first 90% of the characters,
// evaluation the first 16 windows of 256 tokens of the rest.
const (
	DefaultSplitAt = 0.9
	DefaultWindows = 16
	DefaultSeqLen  = 256
)

// Eval returns the protocol's evaluation windows of text: the part after
// fraction splitAt, tokenized by encode as one string, cut into the first n
// windows of seqlen tokens.
func Eval(text string, encode func(string) []int, splitAt float64, n, seqlen int) ([][]int, error) {
	_, eval, err := SplitText(text, splitAt)
	if err != nil {
		return nil, err
	}
	return EvalWindows(encode(eval), n, seqlen)
}

// Calibration returns n random windows of seqlen tokens (seeded) from the
// part of text before fraction splitAt, tokenized by encode as one string.
func Calibration(text string, encode func(string) []int, splitAt float64, n, seqlen int, seed uint64) ([][]int, error) {
	calib, _, err := SplitText(text, splitAt)
	if err != nil {
		return nil, err
	}
	tokens := encode(calib)
	if len(tokens) < seqlen {
		return nil, fmt.Errorf("the calibration text (first %g of the file) has %d tokens, fewer than one window of %d", splitAt, len(tokens), seqlen)
	}
	return RandomWindows(tokens, n, seqlen, seed)
}

// SplitText splits a corpus by characters at fraction at (0.9 in the
// protocol): the calibration part text[:int(at·len)] and the evaluation part.
// Lengths count bytes, which equal characters for ASCII corpora such as
// tinyshakespeare; a split inside a UTF-8 sequence moves back to the
// sequence's start.
func SplitText(text string, at float64) (calib, eval string, err error) {
	if err := CheckSplit(at); err != nil {
		return "", "", err
	}
	cut := int(at * float64(len(text)))
	for cut > 0 && cut < len(text) && text[cut]&0xc0 == 0x80 {
		cut--
	}
	return text[:cut], text[cut:], nil
}

// CheckSplit refuses a split fraction outside [0, 1] (SplitText, Eval and
// Calibration do too; callers check early to fail before loading a model).
func CheckSplit(at float64) error {
	if !(at >= 0 && at <= 1) {
		return fmt.Errorf("split fraction %g must be in [0, 1]", at)
	}
	return nil
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
