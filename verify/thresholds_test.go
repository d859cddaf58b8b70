package verify

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEvaluate(t *testing.T) {
	m := Metrics{MaxRelLogitDiff: 2e-5, MeanKL: 0.01, MaxKL: 0.5, Top1Agreement: 0.92, PPLRatio: 1.03}
	layers := []LayerResult{{Layer: 0, RelError: 1e-6}, {Layer: 1, RelError: 3e-3}, {Layer: 2, RelError: 1e-3}}
	tests := []struct {
		name   string
		th     Thresholds
		failed []string
	}{
		{"none", Thresholds{}, []string{}},
		{"exact passes", Thresholds{MaxRelLogit: ptr(1e-4)}, []string{}},
		{"exact fails", Thresholds{MaxRelLogit: ptr(1e-5)}, []string{NameMaxRelLogit}},
		{"bound is inclusive", Thresholds{MaxRelLogit: ptr(2e-5), MinTop1: ptr(0.92)}, []string{}},
		{"mean kl, not max", Thresholds{MaxKL: ptr(0.02)}, []string{}},
		{"token kl", Thresholds{MaxTokenKL: ptr(0.4)}, []string{NameMaxTokenKL}},
		{"top1 is a lower bound", Thresholds{MinTop1: ptr(0.95)}, []string{NameMinTop1}},
		{"ppl ratio", Thresholds{MaxPPLRatio: ptr(1.02)}, []string{NameMaxPPLRatio}},
		{"worst layer", Thresholds{MaxRelHidden: ptr(2e-3)}, []string{NameMaxRelHidden}},
		{"several, in order", Thresholds{MaxPPLRatio: ptr(1), MaxRelLogit: ptr(0), MaxKL: ptr(1)}, []string{NameMaxRelLogit, NameMaxPPLRatio}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checks, err := tc.th.Evaluate(m, layers)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.failed, Failed(checks)); diff != "" {
				t.Errorf("failed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateCheckDetails(t *testing.T) {
	m := Metrics{Top1Agreement: 0.5}
	layers := []LayerResult{{Layer: 0, RelError: 1e-6}, {Layer: 1, RelError: 3e-3}}
	checks, err := Thresholds{MinTop1: ptr(0.9), MaxRelHidden: ptr(1e-2)}.Evaluate(m, layers)
	if err != nil {
		t.Fatal(err)
	}
	want := []Check{
		{Name: NameMinTop1, Metric: "top1_agreement", Op: ">=", Limit: 0.9, Value: 0.5, Pass: false},
		{Name: NameMaxRelHidden, Metric: "layers[1].rel_error", Op: "<=", Limit: 1e-2, Value: 3e-3, Pass: true},
	}
	if diff := cmp.Diff(want, checks); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	if _, err := (Thresholds{MaxRelHidden: ptr(1)}).Evaluate(m, nil); err == nil {
		t.Error("max_rel_hidden without layers accepted")
	}
}

func TestEvaluateNaNFails(t *testing.T) {
	nan := math.NaN()
	checks, err := Thresholds{MaxRelLogit: ptr(1), MinTop1: ptr(0)}.Evaluate(Metrics{MaxRelLogitDiff: nan, Top1Agreement: nan}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{NameMaxRelLogit, NameMinTop1}, Failed(checks)); diff != "" {
		t.Errorf("NaN must fail every bound (-want +got):\n%s", diff)
	}
}

func TestPresetsAndOverride(t *testing.T) {
	exact, err := Preset("exact")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Thresholds{MaxRelLogit: ptr(1e-4)}, exact); diff != "" {
		t.Errorf("exact preset (-want +got):\n%s", diff)
	}
	q, err := Preset("quantized")
	if err != nil {
		t.Fatal(err)
	}
	got := q.Override(Thresholds{MinTop1: ptr(0.5), MaxRelLogit: ptr(0.3)})
	want := Thresholds{MaxRelLogit: ptr(0.3), MaxKL: q.MaxKL, MinTop1: ptr(0.5), MaxPPLRatio: q.MaxPPLRatio}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("override (-want +got):\n%s", diff)
	}
	// Override and Preset hand out copies: editing one leaves the preset alone.
	*got.MaxKL = 99
	if again, _ := Preset("quantized"); *again.MaxKL == 99 {
		t.Error("preset shares its limits with a returned value")
	}
	if _, err := Preset("fuzzy"); err == nil {
		t.Error("unknown preset accepted")
	}
	if !(Thresholds{}).Empty() || exact.Empty() {
		t.Error("Empty is wrong")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		th   Thresholds
		ok   bool
	}{
		{"zero", Thresholds{MaxRelLogit: ptr(0)}, true},
		{"top1 one", Thresholds{MinTop1: ptr(1)}, true},
		{"negative", Thresholds{MaxKL: ptr(-1)}, false},
		{"top1 above one", Thresholds{MinTop1: ptr(1.5)}, false},
		{"NaN", Thresholds{MaxPPLRatio: ptr(math.NaN())}, false},
		{"Inf", Thresholds{MaxRelHidden: ptr(math.Inf(1))}, false},
	}
	for _, tc := range tests {
		if err := tc.th.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
}

func TestFirstDivergence(t *testing.T) {
	rel := func(es ...float64) []LayerResult {
		ls := make([]LayerResult, len(es))
		for i, e := range es {
			ls[i] = LayerResult{Layer: i, RelError: e}
		}
		return ls
	}
	tests := []struct {
		name   string
		layers []LayerResult
		limit  *float64
		want   Divergence
	}{
		{"first above threshold", rel(0, 2e-4, 5e-2, 3e-2), ptr(1e-4), Divergence{Layer: 1, Rule: "threshold", Threshold: ptr(1e-4)}},
		{"none above threshold", rel(1e-7, 2e-7), ptr(1e-4), Divergence{Layer: -1, Rule: "threshold", Threshold: ptr(1e-4)}},
		{"NaN diverges", rel(0, math.NaN(), 1), ptr(1e-4), Divergence{Layer: 1, Rule: "threshold", Threshold: ptr(1e-4)}},
		{"largest jump", rel(1e-3, 2e-3, 4e-2, 5e-2), nil, Divergence{Layer: 2, Rule: "largest_jump"}},
		{"largest jump at layer 0", rel(0.3, 0.31, 0.2), nil, Divergence{Layer: 0, Rule: "largest_jump"}},
		{"identical", rel(0, 0, 0), nil, Divergence{Layer: -1, Rule: "largest_jump"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, FirstDivergence(tc.layers, tc.limit)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
