package hf

// mixtralSpec is Mixtral (MixtralForCausalLM): every layer is sparse, experts
// live under block_sparse_moe with w1 (gate), w3 (up), w2 (down), the top-k
// routing weights are always renormalized, attention has no bias, and there
// is no shared expert. intermediate_size is the expert width.
var mixtralSpec = &archSpec{
	className: "MixtralForCausalLM",
	parse: func(c *Config, p *parser) {
		c.QKVBias = false
		c.NumExperts = p.requiredInt("num_local_experts")
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
	moePrefix: func(layer int) string { return LayerPrefix(layer) + "block_sparse_moe." },
	expertProj: func(p Proj) string {
		switch p {
		case GateProj:
			return "w1"
		case UpProj:
			return "w3"
		}
		return "w2"
	},
}
