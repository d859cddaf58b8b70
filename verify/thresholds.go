package verify

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Thresholds are the limits a candidate must meet. A nil field is not
// checked. Upper bounds pass when value ≤ limit, lower bounds when
// value ≥ limit; a NaN value never passes.
type Thresholds struct {
	// MaxRelLogit bounds Metrics.MaxRelLogitDiff.
	MaxRelLogit *float64 `json:"max_rel_logit,omitempty"`
	// MaxKL bounds Metrics.MeanKL, the mean KL(ref‖cand) per position in nats.
	MaxKL *float64 `json:"max_kl,omitempty"`
	// MaxTokenKL bounds Metrics.MaxKL, the largest KL at any one position.
	MaxTokenKL *float64 `json:"max_token_kl,omitempty"`
	// MinTop1 is the lowest acceptable Metrics.Top1Agreement (a share in [0, 1]).
	MinTop1 *float64 `json:"min_top1,omitempty"`
	// MaxPPLRatio bounds Metrics.PPLRatio (candidate / reference perplexity).
	MaxPPLRatio *float64 `json:"max_ppl_ratio,omitempty"`
	// MaxRelHidden bounds every layer's LayerResult.RelError; it needs the
	// per-layer comparison. When nil, MaxRelLogit (if set) is still used to
	// locate the first divergent layer, but does not gate on hidden states.
	MaxRelHidden *float64 `json:"max_rel_hidden,omitempty"`
}

// Threshold names, as used in Check.Name and Report.Failed.
const (
	NameMaxRelLogit  = "max_rel_logit"
	NameMaxKL        = "max_kl"
	NameMaxTokenKL   = "max_token_kl"
	NameMinTop1      = "min_top1"
	NameMaxPPLRatio  = "max_ppl_ratio"
	NameMaxRelHidden = "max_rel_hidden"
)

// Presets of --expect. "exact" is the parity of an exact conversion in
// float32 (ALGORITHMS.md §5: 1e-4 relative). "quantized" is for int4
// (GPTQ or RTN, group 128) against its float source: on the shared small
// models int4 stays within a third of each limit while a 3-bit grid or a
// zero-point bug in a single layer breaks at least one; docs/verify.md
// records the measurements.
var presets = map[string]Thresholds{
	"exact": {MaxRelLogit: ptr(1e-4)},
	"quantized": {
		MaxKL:       ptr(0.02),
		MinTop1:     ptr(0.90),
		MaxPPLRatio: ptr(1.10),
	},
}

// PresetNames lists the names Preset accepts, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the thresholds of a named preset ("exact", "quantized").
func Preset(name string) (Thresholds, error) {
	t, ok := presets[name]
	if !ok {
		return Thresholds{}, fmt.Errorf("unknown preset %q (want %s)", name, strings.Join(PresetNames(), " or "))
	}
	return t.clone(), nil
}

// Override returns t with every limit that o sets replaced by o's.
func (t Thresholds) Override(o Thresholds) Thresholds {
	r := t.clone()
	for i, f := range o.fields() {
		if *f.limit != nil {
			*r.fields()[i].limit = ptr(**f.limit)
		}
	}
	return r
}

// Empty reports whether no limit is set.
func (t Thresholds) Empty() bool {
	for _, f := range t.fields() {
		if *f.limit != nil {
			return false
		}
	}
	return true
}

// Validate rejects limits outside the range of their metric.
func (t Thresholds) Validate() error {
	for _, f := range t.fields() {
		if *f.limit == nil {
			continue
		}
		v := **f.limit
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			return fmt.Errorf("threshold %s: %g is not a finite number", f.name, v)
		case f.name == NameMinTop1 && (v < 0 || v > 1):
			return fmt.Errorf("threshold %s: %g is not a share in [0, 1]", f.name, v)
		case v < 0:
			return fmt.Errorf("threshold %s: %g is negative", f.name, v)
		}
	}
	return nil
}

// Check is one threshold applied to one measured value.
type Check struct {
	// Name is the threshold's name, e.g. "max_rel_logit".
	Name string `json:"name"`
	// Metric names the measured value: a Metrics JSON key, or
	// "layers[i].rel_error" for the per-layer gate (the worst layer).
	Metric string `json:"metric"`
	// Op is "<=" for upper bounds and ">=" for lower bounds.
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	Pass  bool    `json:"pass"`
}

// Evaluate applies every set limit of t to the metrics (and, for
// MaxRelHidden, to the worst layer of layers) in a fixed order. It fails
// when MaxRelHidden is set but layers is empty.
func (t Thresholds) Evaluate(m Metrics, layers []LayerResult) ([]Check, error) {
	var checks []Check
	for _, f := range t.fields() {
		if *f.limit == nil {
			continue
		}
		c := Check{Name: f.name, Metric: f.metric, Op: "<=", Limit: **f.limit}
		switch f.name {
		case NameMaxRelLogit:
			c.Value = m.MaxRelLogitDiff
		case NameMaxKL:
			c.Value = m.MeanKL
		case NameMaxTokenKL:
			c.Value = m.MaxKL
		case NameMinTop1:
			c.Op, c.Value = ">=", m.Top1Agreement
		case NameMaxPPLRatio:
			c.Value = m.PPLRatio
		case NameMaxRelHidden:
			if len(layers) == 0 {
				return nil, fmt.Errorf("threshold %s needs the per-layer comparison", f.name)
			}
			worst := 0
			for i, l := range layers {
				if l.RelError > layers[worst].RelError || math.IsNaN(l.RelError) {
					worst = i
				}
			}
			c.Metric = fmt.Sprintf("layers[%d].rel_error", layers[worst].Layer)
			c.Value = layers[worst].RelError
		}
		if c.Op == ">=" {
			c.Pass = c.Value >= c.Limit
		} else {
			c.Pass = c.Value <= c.Limit
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// Failed returns the names of the checks that did not pass.
func Failed(checks []Check) []string {
	failed := []string{}
	for _, c := range checks {
		if !c.Pass {
			failed = append(failed, c.Name)
		}
	}
	return failed
}

// hiddenLimit is the relative hidden-state error above which a layer counts
// as divergent: MaxRelHidden, else MaxRelLogit, else nil.
func (t Thresholds) hiddenLimit() *float64 {
	if t.MaxRelHidden != nil {
		return t.MaxRelHidden
	}
	return t.MaxRelLogit
}

type field struct {
	name, metric string
	limit        **float64
}

// fields lists the limits in evaluation and display order.
func (t *Thresholds) fields() []field {
	return []field{
		{NameMaxRelLogit, "max_rel_logit_diff", &t.MaxRelLogit},
		{NameMaxKL, "mean_kl", &t.MaxKL},
		{NameMaxTokenKL, "max_kl", &t.MaxTokenKL},
		{NameMinTop1, "top1_agreement", &t.MinTop1},
		{NameMaxPPLRatio, "ppl_ratio", &t.MaxPPLRatio},
		{NameMaxRelHidden, "layers[*].rel_error", &t.MaxRelHidden},
	}
}

func (t Thresholds) clone() Thresholds {
	var r Thresholds
	src, dst := t.fields(), r.fields()
	for i := range src {
		if *src[i].limit != nil {
			*dst[i].limit = ptr(**src[i].limit)
		}
	}
	return r
}

func ptr(v float64) *float64 { return &v }
