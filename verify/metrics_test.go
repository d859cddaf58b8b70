package verify

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAccumulatorByHand(t *testing.T) {
	// Two positions, vocab 2. Position 0: identical. Position 1: ref logits
	// (0, 0) → p = (½, ½); cand (log 3, 0) → q = (¾, ¼).
	ref := []float32{1, 2, 0, 0}
	cand := []float32{1, 2, float32(math.Log(3)), 0}
	a := NewAccumulator(2)
	if err := a.Add(ref, cand, []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	kl := 0.5*math.Log(0.5/0.75) + 0.5*math.Log(0.5/0.25)
	// ppl: one prediction (position 0 predicts id 1): NLL = lse(1,2) − 2.
	nll := math.Log(math.Exp(1)+math.Exp(2)) - 2
	want := Metrics{
		Positions:       2,
		MaxAbsLogitDiff: math.Log(3),
		MaxRelLogitDiff: math.Log(3) / 2,
		MeanKL:          kl / 2,
		MaxKL:           kl,
		// At position 1 the reference is tied: argmax takes the first index
		// (0), as does the candidate's, so both positions agree.
		Top1Agreement: 1,
		PPLRef:        math.Exp(nll),
		PPLCand:       math.Exp(nll),
		PPLRatio:      1,
	}
	if diff := cmp.Diff(want, a.Metrics(), cmpopts.EquateApprox(1e-6, 1e-7)); diff != "" {
		t.Error(diff)
	}
}

func TestAccumulatorDisagreement(t *testing.T) {
	a := NewAccumulator(3)
	a.Add([]float32{3, 0, 0}, []float32{0, 3, 0}, []int{2})
	m := a.Metrics()
	if m.Top1Agreement != 0 || m.MeanKL <= 0 || m.PPLRef != 0 {
		t.Errorf("%+v", m)
	}
	if err := a.Add([]float32{1}, []float32{1}, []int{0}); err == nil {
		t.Error("wrong logits size accepted")
	}
}
