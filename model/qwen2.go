package model

import (
	"encoding/json"

	"github.com/moeforge/moeforge/formats/hf"
)

// archSpec assembles the architecture-specific parts of a layer.
type archSpec struct {
	// moe builds the sparse block of layer i from its non-expert linears
	// (experts are appended by the caller).
	moe func(c *hf.Config, layer int, linears map[string]*Linear) *MoE
	// window is layer i's attention window (0 = full causal attention).
	window func(c *hf.Config, layer int) int
}

var archs = map[hf.Arch]archSpec{
	hf.Qwen2:    qwen2,
	hf.Qwen2MoE: qwen2MoE,
	hf.Mixtral:  mixtral,
}

// slidingWindow returns the attention window of layer i of a checkpoint.
func slidingWindow(c *hf.Config, i int) int {
	if c.SlidingWindow <= 0 {
		return 0
	}
	return archs[c.ModelType].window(c, i)
}

// qwen2 is dense: every layer has a SwiGLU MLP, q/k/v have biases. It has no
// sparse block.
var qwen2 = archSpec{moe: nil, window: qwenWindow}

// qwenWindow is the Qwen rule for sliding-window attention (when
// use_sliding_window turned it on): the layers that layer_types marks
// "sliding_attention", or, without layer_types, layers i ≥ max_window_layers
// (default 28).
func qwenWindow(c *hf.Config, i int) int {
	if raw, ok := c.Raw("layer_types"); ok {
		var types []string
		if json.Unmarshal(raw, &types) == nil && len(types) == c.NumHiddenLayers {
			if types[i] == "sliding_attention" {
				return c.SlidingWindow
			}
			return 0
		}
	}
	first := 28
	if raw, ok := c.Raw("max_window_layers"); ok {
		json.Unmarshal(raw, &first)
	}
	if i >= first {
		return c.SlidingWindow
	}
	return 0
}
