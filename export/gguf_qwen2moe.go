package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen2_moe → llama.cpp "qwen2moe": softmax routing whose top-k weights are
// never renormalized, every layer MoE, a shared expert behind a gate that
// llama.cpp computes as silu(x)/x (= sigmoid(x), but NaN at x = 0).
func init() {
	ggufArchs[hf.Qwen2MoE] = &ggufArch{
		name: "qwen2moe",
		check: func(c *hf.Config) error {
			if err := checkQwenHeadDim(c); err != nil {
				return err
			}
			switch {
			case c.NormTopKProb:
				return refuse("config norm_topk_prob=true: llama.cpp's qwen2moe graph never renormalizes the top-k routing weights")
			case c.DecoderSparseStep > 1:
				return refuse("config decoder_sparse_step=%d: llama.cpp's qwen2moe graph makes every layer MoE (no dense layers)", c.DecoderSparseStep)
			case len(c.MLPOnlyLayers) > 0:
				return refuse("config mlp_only_layers=%v: llama.cpp's qwen2moe graph makes every layer MoE (no dense layers)", c.MLPOnlyLayers)
			case !c.HasSharedExpert():
				return refuse("config shared_expert_intermediate_size=0: llama.cpp's qwen2moe graph requires the shared expert")
			}
			return nil
		},
		keys: func(c *hf.Config, kv func(string, any)) {
			commonKeys(c, kv)
			kv("expert_count", uint32(c.NumExperts))
			kv("expert_used_count", uint32(c.NumExpertsPerTok))
			kv("expert_feed_forward_length", uint32(c.MoEIntermediateSize))
			kv("expert_shared_feed_forward_length", uint32(c.SharedExpertIntermediateSize))
		},
		layers: func(b *builder, i int) error {
			c := b.c
			b.attention(i, false)
			h := c.HiddenSize
			for _, l := range c.LayerLinears(i) {
				switch l.Kind {
				case hf.KindRouter:
					b.router(fmt.Sprintf("blk.%d.ffn_gate_inp.weight", i), l, []int{h, c.NumExperts})
				case hf.KindSharedExpert:
					b.linear(fmt.Sprintf("blk.%d.ffn_%s_shexp.weight", i, ffnName(l.Proj)), l, nil)
				case hf.KindSharedExpertGate:
					// silu(x)/x is 0/0 where the gate's input is 0: an
					// all-zero row (what shared-exact, hybrid-exact and
					// carving write for sigmoid(0) = ½) gives NaN.
					x, err := b.src.gateRow(l)
					if err != nil {
						return err
					}
					if isZero(x) {
						return refuse("%s: tensor %s.weight is all zero: llama.cpp computes the shared-expert gate as silu(x)/x, which is NaN at 0 (transformers: sigmoid(0) = 0.5)", b.src.ck.Dir, l.Name)
					}
					b.router(fmt.Sprintf("blk.%d.ffn_gate_inp_shexp.weight", i), l, []int{h})
				}
			}
			for _, p := range hf.FFNProjs {
				b.experts(fmt.Sprintf("blk.%d.ffn_%s_exps.weight", i, ffnName(p)), i, p)
			}
			return nil
		},
	}
}
