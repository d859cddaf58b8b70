package hf

// qwen2Spec is the dense Qwen2 architecture (Qwen2ForCausalLM): q/k/v always
// have a bias, o_proj none; dense SwiGLU MLP in every layer; sliding window
// (when use_sliding_window) on the layers layer_types or max_window_layers
// name. Upcycled into qwen2_moe.
var qwen2Spec = &archSpec{
	className: "Qwen2ForCausalLM",
	upcycleTo: Qwen2MoE,
	parse: func(c *Config, p *parser) {
		c.QKVBias = true
		parseSlidingWindow(c, p)
	},
	marshal:     func(c *Config, set func(string, any)) {},
	moePrefix:   mlpPrefix,
	fusedPrefix: mlpPrefix,
	expertProj:  qwenExpertProj,
	window:      qwenLayerWindow,
}
