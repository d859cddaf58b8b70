package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen2_moe → mlx-lm's qwen2_moe.py: qwen2 attention, every layer MoE
// with a shared expert and its gate, softmax top-k without
// renormalization, lm_head always built (tied embeddings are written under
// its name).
func init() {
	mlxArchs[hf.Qwen2MoE] = &mlxArch{
		tiedHead: true,
		check: func(c *hf.Config) error {
			if err := checkMLXHeadDim(c); err != nil {
				return err
			}
			switch {
			case c.NormTopKProb:
				return fmt.Errorf("norm_topk_prob=true: mlx-lm's qwen2_moe ignores it (it never renormalizes the top-k routing weights)")
			case c.DecoderSparseStep != 1:
				return fmt.Errorf("decoder_sparse_step=%d: mlx-lm's qwen2_moe ignores it (every layer is MoE there)", c.DecoderSparseStep)
			case len(c.MLPOnlyLayers) > 0:
				return fmt.Errorf("mlp_only_layers=%v: mlx-lm's qwen2_moe ignores it (every layer is MoE there)", c.MLPOnlyLayers)
			case c.SharedExpertIntermediateSize <= 0:
				return fmt.Errorf("shared_expert_intermediate_size=%d: mlx-lm's qwen2_moe always builds a shared expert", c.SharedExpertIntermediateSize)
			}
			return checkMLXQwen2(c)
		},
	}
}
