package verify

import (
	"fmt"
	"math"
)

// Metrics are the parity metrics of ALGORITHMS.md §5 between a reference
// and a candidate model over the same positions.
type Metrics struct {
	// Positions is the number of compared positions (sequences × tokens).
	Positions int `json:"positions"`
	// MaxAbsLogitDiff is max |c − r| over every position and vocabulary entry.
	MaxAbsLogitDiff float64 `json:"max_abs_logit_diff"`
	// MaxRelLogitDiff is MaxAbsLogitDiff / max |r|.
	MaxRelLogitDiff float64 `json:"max_rel_logit_diff"`
	// MeanKL and MaxKL are KL(ref‖cand) per position, in nats.
	MeanKL float64 `json:"mean_kl"`
	MaxKL  float64 `json:"max_kl"`
	// Top1Agreement is the share of positions where both argmaxes agree.
	Top1Agreement float64 `json:"top1_agreement"`
	// PPLRef and PPLCand are the perplexities (next-token, T−1 predictions
	// per sequence), PPLRatio = PPLCand / PPLRef.
	PPLRef   float64 `json:"ppl_ref"`
	PPLCand  float64 `json:"ppl_candidate"`
	PPLRatio float64 `json:"ppl_ratio"`
}

// Accumulator gathers the metrics sequence by sequence, so that logits of
// long runs never need to be held at once.
type Accumulator struct {
	vocab        int
	positions    int
	maxAbs       float64
	maxRef       float64
	klSum, klMax float64
	agree        int
	nllRef       float64
	nllCand      float64
	predicted    int
}

// NewAccumulator starts an empty accumulation for logits of vocab entries.
func NewAccumulator(vocab int) *Accumulator { return &Accumulator{vocab: vocab} }

// Add compares one sequence: ref and cand are logits [len(ids), vocab], ids
// the sequence's tokens (their next-token NLL gives the perplexities).
func (a *Accumulator) Add(ref, cand []float32, ids []int) error {
	V := a.vocab
	T := len(ids)
	if len(ref) != T*V || len(cand) != T*V {
		return fmt.Errorf("logits hold %d and %d values, want %d×%d", len(ref), len(cand), T, V)
	}
	for t := 0; t < T; t++ {
		r := ref[t*V : (t+1)*V]
		c := cand[t*V : (t+1)*V]
		lseR, lseC := logSumExp(r), logSumExp(c)
		var kl float64
		ar, ac := 0, 0
		for v := 0; v < V; v++ {
			rv, cv := float64(r[v]), float64(c[v])
			a.maxAbs = math.Max(a.maxAbs, math.Abs(cv-rv))
			a.maxRef = math.Max(a.maxRef, math.Abs(rv))
			lpR, lpC := rv-lseR, cv-lseC
			kl += math.Exp(lpR) * (lpR - lpC)
			if r[v] > r[ar] {
				ar = v
			}
			if c[v] > c[ac] {
				ac = v
			}
		}
		kl = math.Max(kl, 0) // rounding can give −1e-17
		a.klSum += kl
		a.klMax = math.Max(a.klMax, kl)
		if ar == ac {
			a.agree++
		}
		if t+1 < T {
			a.nllRef += lseR - float64(r[ids[t+1]])
			a.nllCand += lseC - float64(c[ids[t+1]])
			a.predicted++
		}
		a.positions++
	}
	if math.IsNaN(a.maxAbs) || math.IsNaN(a.klSum) {
		return nanError(ref, cand, V)
	}
	return nil
}

// nanError says which side's logits hold a non-finite value, and where.
func nanError(ref, cand []float32, V int) error {
	for _, side := range []struct {
		name   string
		logits []float32
	}{{"reference", ref}, {"candidate", cand}} {
		for i, v := range side.logits {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%s logits are %v at position %d, vocabulary entry %d", side.name, v, i/V, i%V)
			}
		}
	}
	return fmt.Errorf("logits contain NaN")
}

// Metrics returns the metrics of everything added so far.
func (a *Accumulator) Metrics() Metrics {
	m := Metrics{Positions: a.positions, MaxAbsLogitDiff: a.maxAbs, MaxKL: a.klMax}
	if a.maxRef > 0 {
		m.MaxRelLogitDiff = a.maxAbs / a.maxRef
	}
	if a.positions > 0 {
		m.MeanKL = a.klSum / float64(a.positions)
		m.Top1Agreement = float64(a.agree) / float64(a.positions)
	}
	if a.predicted > 0 {
		m.PPLRef = math.Exp(a.nllRef / float64(a.predicted))
		m.PPLCand = math.Exp(a.nllCand / float64(a.predicted))
		m.PPLRatio = m.PPLCand / m.PPLRef
	}
	return m
}

func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

func expMean(sum float64, n int) float64 { return math.Exp(sum / float64(n)) }
