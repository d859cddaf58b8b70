package verify

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/model"
)

// LayerResult compares the hidden state after one decoder layer, and the
// layer's expert selection when both models route the same way.
type LayerResult struct {
	// Layer is the decoder layer's index.
	Layer int `json:"layer"`
	// MaxAbsDiff is max |h_cand − h_ref| over all tokens and features of the
	// hidden state after the layer (after the final norm for the last layer,
	// as transformers reports hidden_states).
	MaxAbsDiff float64 `json:"max_abs_diff"`
	// RelError is MaxAbsDiff / max |h_ref| over the same values.
	RelError float64 `json:"rel_error"`
	// Routing is nil unless both layers are MoE with the same number of
	// experts and the same top-k.
	Routing *Routing `json:"routing,omitempty"`
}

// Routing compares the top-k expert sets the two models choose per token.
type Routing struct {
	Experts int `json:"experts"`
	TopK    int `json:"top_k"`
	// SetAgreement is the share of tokens whose top-k sets are equal
	// (order ignored).
	SetAgreement float64 `json:"set_agreement"`
	// MeanOverlap is the mean over tokens of |A ∩ B| / k.
	MeanOverlap float64 `json:"mean_overlap"`
}

// Divergence says where the candidate's hidden states first leave the
// reference's.
type Divergence struct {
	// Layer is the first divergent layer, or -1 when every layer is within
	// the threshold (or every error is zero).
	Layer int `json:"layer"`
	// Rule is "threshold" (first layer whose RelError exceeds Threshold) or
	// "largest_jump" (no threshold in effect: the layer whose RelError grows
	// most over the previous layer's).
	Rule string `json:"rule"`
	// Threshold is the limit used by the "threshold" rule.
	Threshold *float64 `json:"threshold,omitempty"`
}

// FirstDivergence locates the first divergent layer. With a limit, it is
// the first layer whose relative error exceeds it (or is NaN); without one,
// the layer with the largest increase of relative error over its
// predecessor (the first layer's predecessor counts as 0).
func FirstDivergence(layers []LayerResult, limit *float64) Divergence {
	if limit != nil {
		d := Divergence{Layer: -1, Rule: "threshold", Threshold: ptr(*limit)}
		for _, l := range layers {
			if l.RelError > *limit || math.IsNaN(l.RelError) {
				d.Layer = l.Layer
				break
			}
		}
		return d
	}
	d := Divergence{Layer: -1, Rule: "largest_jump"}
	best, prev := 0.0, 0.0
	for _, l := range layers {
		if math.IsNaN(l.RelError) {
			d.Layer = l.Layer
			return d
		}
		if jump := l.RelError - prev; jump > best {
			best, d.Layer = jump, l.Layer
		}
		prev = l.RelError
	}
	return d
}

// CheckCompatible reports why two models cannot be compared: different
// vocabularies, or for the per-layer comparison a different number of
// layers or hidden size.
func CheckCompatible(ref, cand *model.Model, perLayer bool) error {
	rc, cc := ref.Config, cand.Config
	if rc.VocabSize != cc.VocabSize {
		return fmt.Errorf("vocabularies differ: reference has vocab_size %d, candidate %d; verify compares logits token by token and needs the same vocabulary", rc.VocabSize, cc.VocabSize)
	}
	if !perLayer {
		return nil
	}
	if len(ref.Layers) != len(cand.Layers) {
		return fmt.Errorf("--per-layer needs the same number of layers: reference has num_hidden_layers %d, candidate %d", len(ref.Layers), len(cand.Layers))
	}
	if rc.HiddenSize != cc.HiddenSize {
		return fmt.Errorf("--per-layer needs the same hidden size: reference has hidden_size %d, candidate %d", rc.HiddenSize, cc.HiddenSize)
	}
	return nil
}

// layerCollector accumulates the per-layer comparison over batches: the
// reference run records its hidden states and expert choices, the candidate
// run compares against them as they are produced.
type layerCollector struct {
	layers []layerAcc
	err    error
}

// layerAcc is one layer's share of the collector.
type layerAcc struct {
	routed         bool // routing is compared (same experts and top-k)
	experts, topK  int
	maxAbs, maxRef float64
	agree          int       // tokens with equal top-k sets
	overlap        int       // Σ |A ∩ B|
	tokens         int       // routed tokens compared
	refHidden      []float32 // this batch's reference hidden state
	refExperts     []int32   // this batch's reference choices
}

func newLayerCollector(ref, cand *model.Model) *layerCollector {
	c := &layerCollector{layers: make([]layerAcc, len(ref.Layers))}
	for i := range c.layers {
		r, k := ref.Layers[i].MoE, cand.Layers[i].MoE
		if r != nil && k != nil && len(r.Experts) == len(k.Experts) && r.TopK == k.TopK {
			c.layers[i] = layerAcc{routed: true, experts: len(r.Experts), topK: r.TopK}
		}
	}
	return c
}

// layer returns the accumulator of decoder layer i, or nil outside.
func (c *layerCollector) layer(i int) *layerAcc {
	if i < 0 || i >= len(c.layers) {
		return nil
	}
	return &c.layers[i]
}

// refHooks record the reference run of one batch. Hidden index i+1 is the
// state after layer i.
func (c *layerCollector) refHooks() *model.Hooks {
	return &model.Hooks{
		Hidden: func(index int, h []float32) {
			if l := c.layer(index - 1); l != nil {
				l.refHidden = append(l.refHidden[:0], h...)
			}
		},
		Routing: func(layer int, _ []float32, experts []int32, _ []float32) {
			if l := c.layer(layer); l != nil && l.routed {
				l.refExperts = append(l.refExperts[:0], experts...)
			}
		},
	}
}

// candHooks compare the candidate run of the same batch.
func (c *layerCollector) candHooks() *model.Hooks {
	return &model.Hooks{
		Hidden: func(index int, h []float32) {
			l := c.layer(index - 1)
			if l == nil {
				return
			}
			if len(l.refHidden) != len(h) {
				// Only models CheckCompatible rejects get here.
				c.err = fmt.Errorf("layer %d: hidden states of %d and %d values", index-1, len(l.refHidden), len(h))
				return
			}
			for j, v := range h {
				r := float64(l.refHidden[j])
				if d := math.Abs(float64(v) - r); d > l.maxAbs || d != d {
					l.maxAbs = d
				}
				l.maxRef = math.Max(l.maxRef, math.Abs(r))
			}
		},
		Routing: func(layer int, _ []float32, experts []int32, _ []float32) {
			l := c.layer(layer)
			if l == nil || !l.routed || len(l.refExperts) != len(experts) {
				return
			}
			k := l.topK
			for t := 0; t+k <= len(experts); t += k {
				o := overlap(l.refExperts[t:t+k], experts[t:t+k])
				l.overlap += o
				if o == k {
					l.agree++
				}
				l.tokens++
			}
		},
	}
}

// overlap counts the ids of a that also appear in b (both of length k,
// without repeats).
func overlap(a, b []int32) int {
	n := 0
	for _, x := range a {
		if slices.Contains(b, x) {
			n++
		}
	}
	return n
}

func (c *layerCollector) results() []LayerResult {
	out := make([]LayerResult, len(c.layers))
	for i, l := range c.layers {
		r := LayerResult{Layer: i, MaxAbsDiff: l.maxAbs}
		switch {
		case l.maxRef > 0 || math.IsNaN(l.maxAbs):
			r.RelError = l.maxAbs / l.maxRef
		case l.maxAbs > 0:
			// The reference is all zeros: any difference is total. (The
			// largest finite value keeps the JSON document valid.)
			r.RelError = math.MaxFloat64
		}
		if l.routed {
			r.Routing = &Routing{Experts: l.experts, TopK: l.topK}
			if l.tokens > 0 {
				r.Routing.SetAgreement = float64(l.agree) / float64(l.tokens)
				r.Routing.MeanOverlap = float64(l.overlap) / float64(l.tokens*l.topK)
			}
		}
		out[i] = r
	}
	return out
}
