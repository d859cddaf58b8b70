package hf

// qwen2Spec is the dense Qwen2 architecture (Qwen2ForCausalLM): q/k/v always
// have a bias, o_proj none; dense SwiGLU MLP in every layer.
var qwen2Spec = &archSpec{
	className: "Qwen2ForCausalLM",
	parse: func(c *Config, p *parser) {
		c.QKVBias = true
		if p.bool("use_sliding_window", false) {
			c.SlidingWindow = p.int("sliding_window", 0)
		}
	},
	marshal:    func(c *Config, set func(string, any)) {},
	moePrefix:  func(layer int) string { return LayerPrefix(layer) + "mlp." },
	expertProj: func(p Proj) string { return string(p) },
}
