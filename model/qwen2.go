package model

import "github.com/moeforge/moeforge/formats/hf"

// archSpec assembles the architecture-specific parts of a layer.
type archSpec struct {
	// moe builds the sparse block of layer i from its non-expert linears
	// (experts are appended by the caller).
	moe func(c *hf.Config, layer int, linears map[string]*Linear) *MoE
}

var archs = map[hf.Arch]archSpec{
	hf.Qwen2:    qwen2,
	hf.Qwen2MoE: qwen2MoE,
	hf.Mixtral:  mixtral,
}

// qwen2 is dense: every layer has a SwiGLU MLP, q/k/v have biases. It has no
// sparse block.
var qwen2 = archSpec{moe: nil}
