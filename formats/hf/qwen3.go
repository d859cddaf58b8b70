package hf

// qwen3Spec is dense Qwen3 (Qwen3ForCausalLM, transformers'
// modeling_qwen3.py): Qwen2 plus an RMSNorm (width head_dim, eps
// rms_norm_eps) over each head of q and k before rope; q/k/v and o_proj
// biases only when attention_bias (default false); head_dim defaults to 128
// and num_key_value_heads to 32 when absent (Qwen3Config's defaults); the
// Qwen2 sliding-window rule (layer_types, else max_window_layers).
// Upcycled into qwen3_moe.
var qwen3Spec = &archSpec{
	className: "Qwen3ForCausalLM",
	qkNorm:    true,
	upcycleTo: Qwen3MoE,
	parse: func(c *Config, p *parser) {
		parseQwen3Attention(c, p, 32)
		if _, ok := p.raw["head_dim"]; !ok {
			c.HeadDim = 128
		}
		parseSlidingWindow(c, p)
	},
	marshal:     func(c *Config, set func(string, any)) { set("attention_bias", c.QKVBias) },
	moePrefix:   mlpPrefix,
	fusedPrefix: mlpPrefix,
	expertProj:  qwenExpertProj,
	window:      qwenLayerWindow,
}

// parseQwen3Attention reads the attention keys of Qwen3 and Qwen3-MoE:
// attention_bias governs q, k, v and o_proj; an absent num_key_value_heads
// takes the config class's default kvDefault (null: the number of heads).
func parseQwen3Attention(c *Config, p *parser, kvDefault int) {
	c.QKVBias = p.bool("attention_bias", false)
	c.OProjBias = c.QKVBias
	if _, ok := p.raw["num_key_value_heads"]; !ok {
		c.NumKeyValueHeads = kvDefault
	}
}
