package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen3 → mlx-lm's qwen3.py and qwen3_moe → qwen3_moe.py: an RMSNorm
// (eps rms_norm_eps) over each q and k head before rope, kept as
// self_attn.q_norm / k_norm [head_dim] in float; head_dim read from the
// config (it may differ from hidden/heads); no q/k/v/o biases; lm_head only
// when untied (sanitize drops a tied one). qwen3_moe: router mlp.gate (8-bit
// group 64 from a float input, as its quant_predicate says), routed experts
// stacked under mlp.switch_mlp by sanitize, softmax top-k renormalized when
// norm_topk_prob, dense MLP layers where mlp_only_layers and
// decoder_sparse_step say so — the transformers rules, so none is refused.
//
// Their ModelArgs require head_dim (and, for qwen3_moe, num_experts) as
// top-level keys, which a transformers config may leave to a default or
// spell num_local_experts: config writes them (and rope_theta, as for
// every architecture).
func init() {
	mlxArchs[hf.Qwen3] = &mlxArch{check: checkMLXQwen3, config: mlxQwen3Keys}
	mlxArchs[hf.Qwen3MoE] = &mlxArch{check: checkMLXQwen3, config: func(c *hf.Config, set func(string, any)) {
		mlxQwen3Keys(c, set)
		set("num_experts", c.NumExperts)
	}}
}

// checkMLXQwen3 refuses attention_bias: mlx-lm's Qwen3 attention has no
// biases, so they would be dropped (or refused by its strict loader).
func checkMLXQwen3(c *hf.Config) error {
	if c.QKVBias || c.OProjBias {
		return fmt.Errorf("attention_bias=true: mlx-lm's %s has no q/k/v/o_proj biases", c.ModelType)
	}
	return nil
}

func mlxQwen3Keys(c *hf.Config, set func(string, any)) { set("head_dim", c.HeadDim) }
