package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/gguf"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen3 → llama.cpp "qwen3" and qwen3_moe → "qwen3moe" (llama.cpp
// src/models/qwen3.cpp, qwen3moe.cpp): NEOX rope (q/k rows unpermuted), an
// RMSNorm (eps attention.layer_norm_rms_epsilon) of each q and k head
// before rope from blk.N.attn_q_norm / attn_k_norm [head_dim]; head_dim
// from attention.key_length / value_length (llama.cpp's default is
// hidden/heads, which Qwen3 does not follow). The graph has no o_proj bias,
// so attention_bias (which biases q, k, v and o_proj) is refused. qwen3moe
// renormalizes the softmax top-k weights always and makes every layer MoE.
func init() {
	ggufArchs[hf.Qwen3] = &ggufArch{
		name:  "qwen3",
		check: checkQwen3Attention,
		keys:  qwen3Keys,
		layers: func(b *builder, i int) error {
			b.attention(i, false)
			b.qkNorm(i)
			for _, l := range b.c.LayerLinears(i)[4:] {
				b.linear(fmt.Sprintf("blk.%d.ffn_%s.weight", i, ffnName(l.Proj)), l, nil)
			}
			return nil
		},
	}
	ggufArchs[hf.Qwen3MoE] = &ggufArch{
		name: "qwen3moe",
		check: func(c *hf.Config) error {
			if err := checkQwen3Attention(c); err != nil {
				return err
			}
			switch {
			case !c.NormTopKProb:
				return refuse("config norm_topk_prob=false: llama.cpp's qwen3moe graph always renormalizes the top-k routing weights")
			case c.DecoderSparseStep > 1:
				return refuse("config decoder_sparse_step=%d: llama.cpp's qwen3moe graph makes every layer MoE (no dense layers)", c.DecoderSparseStep)
			case len(c.MLPOnlyLayers) > 0:
				return refuse("config mlp_only_layers=%v: llama.cpp's qwen3moe graph makes every layer MoE (no dense layers)", c.MLPOnlyLayers)
			}
			return nil
		},
		keys: func(c *hf.Config, kv func(string, any)) {
			qwen3Keys(c, kv)
			kv("expert_count", uint32(c.NumExperts))
			kv("expert_used_count", uint32(c.NumExpertsPerTok))
			kv("expert_feed_forward_length", uint32(c.MoEIntermediateSize))
		},
		layers: func(b *builder, i int) error {
			c := b.c
			b.attention(i, false)
			b.qkNorm(i)
			for _, l := range c.LayerLinears(i) {
				if l.Kind == hf.KindRouter {
					b.router(fmt.Sprintf("blk.%d.ffn_gate_inp.weight", i), l, []int{c.HiddenSize, c.NumExperts})
				}
			}
			for _, p := range hf.FFNProjs {
				b.experts(fmt.Sprintf("blk.%d.ffn_%s_exps.weight", i, ffnName(p)), i, p)
			}
			return nil
		},
	}
}

// checkQwen3Attention: llama.cpp's qwen3 and qwen3moe graphs add no o_proj
// bias, and transformers' attention_bias biases o_proj too.
func checkQwen3Attention(c *hf.Config) error {
	if c.QKVBias || c.OProjBias {
		return refuse("config attention_bias=true: llama.cpp's %s graph has no o_proj bias", ggufArchs[c.ModelType].name)
	}
	return nil
}

// qwen3Keys are commonKeys plus the head width, which Qwen3 sets
// independently of hidden/heads.
func qwen3Keys(c *hf.Config, kv func(string, any)) {
	commonKeys(c, kv)
	kv("attention.key_length", uint32(c.HeadDim))
	kv("attention.value_length", uint32(c.HeadDim))
}

// qkNorm writes layer i's per-head q and k RMSNorm weights [head_dim] as F32.
func (b *builder) qkNorm(i int) {
	hd := b.c.HeadDim
	b.vector(fmt.Sprintf("blk.%d.attn_q_norm.weight", i), hf.QNorm(i), []int{hd}, gguf.F32)
	b.vector(fmt.Sprintf("blk.%d.attn_k_norm.weight", i), hf.KNorm(i), []int{hd}, gguf.F32)
}
