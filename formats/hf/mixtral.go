package hf

// mixtralSpec is Mixtral (MixtralForCausalLM): every layer is sparse, experts
// live under block_sparse_moe with w1 (gate), w3 (up), w2 (down), the top-k
// routing weights are always renormalized, attention has no bias, and there
// is no shared expert. intermediate_size is the expert width; sliding_window,
// when set, applies to every layer. In the fused layout of transformers 5
// the block is renamed: block_sparse_moe.gate → mlp.gate, w1+w3 →
// mlp.experts.gate_up_proj, w2 → mlp.experts.down_proj.
var mixtralSpec = &archSpec{
	className: "MixtralForCausalLM",
	moe:       true,
	parse: func(c *Config, p *parser) {
		c.QKVBias = false
		c.NumExperts = p.requiredInt("num_local_experts")
		c.expertsKeyName = "num_local_experts"
		c.NumExpertsPerTok = p.requiredInt("num_experts_per_tok")
		c.MoEIntermediateSize = c.IntermediateSize
		c.NormTopKProb = true
		c.DecoderSparseStep = 1
		c.SlidingWindow = p.int("sliding_window", 0)
	},
	marshal: func(c *Config, set func(string, any)) {
		set("num_local_experts", c.NumExperts)
		set("num_experts_per_tok", c.NumExpertsPerTok)
		set("intermediate_size", c.MoEIntermediateSize)
	},
	moePrefix:   func(layer int) string { return LayerPrefix(layer) + "block_sparse_moe." },
	fusedPrefix: mlpPrefix,
	expertProj: func(p Proj) string {
		switch p {
		case GateProj:
			return "w1"
		case UpProj:
			return "w3"
		}
		return "w2"
	},
	window:         everyLayerWindow,
	expertsKey:     "num_local_experts",
	expertWidthKey: "intermediate_size",
}
