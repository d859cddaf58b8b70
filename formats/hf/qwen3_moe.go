package hf

// qwen3MoESpec is Qwen3-MoE (Qwen3MoeForCausalLM, the Qwen3-30B-A3B family,
// transformers' modeling_qwen3_moe.py): Qwen3 attention (q/k norm,
// attention_bias default false, also on o_proj), routed experts with softmax
// top-k routing renormalized only when norm_topk_prob (default false; the
// released configs set it true), no shared expert, dense layers where
// mlp_only_layers and decoder_sparse_step say so. The number of experts is
// num_experts or num_local_experts; head_dim absent means hidden/heads and
// num_key_value_heads absent means 4 (Qwen3MoeConfig's defaults). A set
// use_sliding_window applies sliding_window to every layer.
var qwen3MoESpec = &archSpec{
	className: "Qwen3MoeForCausalLM",
	moe:       true,
	qkNorm:    true,
	parse: func(c *Config, p *parser) {
		parseQwen3Attention(c, p, 4)
		parseQwenMoE(c, p)
		parseSlidingWindow(c, p)
	},
	marshal: func(c *Config, set func(string, any)) {
		set("attention_bias", c.QKVBias)
		marshalQwenMoE(c, set)
	},
	moePrefix:   mlpPrefix,
	fusedPrefix: mlpPrefix,
	expertProj:  qwenExpertProj,
	window:      everyLayerWindow,
}
