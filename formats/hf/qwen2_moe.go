package hf

// qwen2MoESpec is Qwen2-MoE (Qwen2MoeForCausalLM, the Qwen1.5-MoE family):
// routed experts with softmax top-k routing (renormalized only when
// norm_topk_prob), a shared expert behind a sigmoid gate, dense MLP layers
// where decoder_sparse_step and mlp_only_layers say so.
var qwen2MoESpec = &archSpec{
	className: "Qwen2MoeForCausalLM",
	parse: func(c *Config, p *parser) {
		c.QKVBias = p.bool("qkv_bias", true)
		c.NumExperts = p.requiredInt("num_experts")
		c.NumExpertsPerTok = p.requiredInt("num_experts_per_tok")
		c.MoEIntermediateSize = p.requiredInt("moe_intermediate_size")
		c.SharedExpertIntermediateSize = p.int("shared_expert_intermediate_size", 0)
		c.NormTopKProb = p.bool("norm_topk_prob", false)
		c.DecoderSparseStep = p.int("decoder_sparse_step", 1)
		c.MLPOnlyLayers = p.ints("mlp_only_layers")
		if p.bool("use_sliding_window", false) {
			c.SlidingWindow = p.int("sliding_window", 0)
		}
	},
	marshal: func(c *Config, set func(string, any)) {
		set("qkv_bias", c.QKVBias)
		set("num_experts", c.NumExperts)
		set("num_experts_per_tok", c.NumExpertsPerTok)
		set("moe_intermediate_size", c.MoEIntermediateSize)
		set("shared_expert_intermediate_size", c.SharedExpertIntermediateSize)
		set("norm_topk_prob", c.NormTopKProb)
		set("decoder_sparse_step", c.DecoderSparseStep)
		layers := c.MLPOnlyLayers
		if layers == nil {
			layers = []int{}
		}
		set("mlp_only_layers", layers)
	},
	moePrefix:  func(layer int) string { return LayerPrefix(layer) + "mlp." },
	expertProj: func(p Proj) string { return string(p) },
}
