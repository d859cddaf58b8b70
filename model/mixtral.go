package model

import "github.com/moeforge/moeforge/formats/hf"

// mixtral: every layer sparse, softmax over all experts then the top-k
// weights always renormalized to sum to one; no shared expert; attention
// without biases (the config says so); sliding_window, when set, applies to
// every layer.
var mixtral = archSpec{
	moe: func(c *hf.Config, i int, ls map[string]*Linear) *MoE {
		return &MoE{Router: ls[c.RouterLinear(i)], TopK: c.NumExpertsPerTok, NormTopK: true}
	},
	window: func(c *hf.Config, i int) int { return c.SlidingWindow },
}
