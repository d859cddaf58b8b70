package hf

// qwen2MoESpec is Qwen2-MoE (Qwen2MoeForCausalLM, the Qwen1.5-MoE family):
// routed experts with softmax top-k routing (renormalized only when
// norm_topk_prob), a shared expert behind a sigmoid gate, dense MLP layers
// where decoder_sparse_step and mlp_only_layers say so; q/k/v biases unless
// qkv_bias is false; the Qwen2 sliding-window rule.
var qwen2MoESpec = &archSpec{
	className:    "Qwen2MoeForCausalLM",
	moe:          true,
	sharedExpert: true,
	parse: func(c *Config, p *parser) {
		c.QKVBias = p.bool("qkv_bias", true)
		parseQwenMoE(c, p)
		c.SharedExpertIntermediateSize = p.int("shared_expert_intermediate_size", 0)
		parseSlidingWindow(c, p)
	},
	marshal: func(c *Config, set func(string, any)) {
		set("qkv_bias", c.QKVBias)
		marshalQwenMoE(c, set)
		set("shared_expert_intermediate_size", c.SharedExpertIntermediateSize)
	},
	moePrefix:   mlpPrefix,
	fusedPrefix: mlpPrefix,
	expertProj:  qwenExpertProj,
	window:      qwenLayerWindow,
}
