package model

import "math"

// LogSoftmax returns log p(v) for one row of logits, in float64.
func LogSoftmax(logits []float32) []float64 {
	out := make([]float64, len(logits))
	lse := LogSumExp(logits)
	for i, v := range logits {
		out[i] = float64(v) - lse
	}
	return out
}

// LogSumExp is log Σ exp(logits) in float64.
func LogSumExp(logits []float32) float64 {
	if len(logits) == 0 {
		return math.Inf(-1)
	}
	m := logits[0]
	for _, v := range logits[1:] {
		if v > m {
			m = v
		}
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v) - float64(m))
	}
	return float64(m) + math.Log(s)
}

// NextTokenNLL returns, for one sequence with logits [T, vocab], the negative
// log-likelihood of ids[t+1] given positions ≤ t, for t in [0, T−1).
// Positions are spread over the worker threads when there are many.
func NextTokenNLL(logits []float32, vocab int, ids []int) []float64 {
	if len(ids) < 2 {
		return nil
	}
	nll := make([]float64, len(ids)-1)
	f := func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row := logits[t*vocab : (t+1)*vocab]
			nll[t] = LogSumExp(row) - float64(row[ids[t+1]])
		}
	}
	if len(nll)*vocab < 1<<16 {
		f(0, len(nll))
	} else {
		parallelFor(len(nll), f)
	}
	return nll
}
