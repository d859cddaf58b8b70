package model

import "github.com/moeforge/moeforge/formats/hf"

// qwen2MoE: softmax routing in float32 over all experts, top-k, renormalized
// only when norm_topk_prob; a shared expert added with weight
// sigmoid(shared_expert_gate·x). Layers listed in mlp_only_layers or not on
// the decoder_sparse_step are dense.
var qwen2MoE = archSpec{
	moe: func(c *hf.Config, i int, ls map[string]*Linear) *MoE {
		m := &MoE{Router: ls[c.RouterLinear(i)], TopK: c.NumExpertsPerTok, NormTopK: c.NormTopKProb}
		if c.HasSharedExpert() {
			m.Shared = &FFN{
				Gate: ls[c.SharedExpertLinear(i, hf.GateProj)],
				Up:   ls[c.SharedExpertLinear(i, hf.UpProj)],
				Down: ls[c.SharedExpertLinear(i, hf.DownProj)],
			}
			m.SharedGate = ls[c.SharedExpertGateLinear(i)]
		}
		return m
	},
	window: qwenWindow,
}
