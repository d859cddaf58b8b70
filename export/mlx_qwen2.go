package export

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/hf"
)

// qwen2 → mlx-lm's qwen2.py: q/k/v always with bias, head_dim =
// hidden/heads, lm_head only when untied (its sanitize drops a tied one).
func init() {
	mlxArchs[hf.Qwen2] = &mlxArch{check: checkMLXQwen2}
}

// checkMLXQwen2 refuses what mlx-lm's qwen2 and qwen2_moe attention
// cannot express: another head_dim, or q/k/v without biases.
func checkMLXQwen2(c *hf.Config) error {
	if err := checkMLXHeadDim(c); err != nil {
		return err
	}
	if !c.QKVBias {
		return fmt.Errorf("qkv_bias=false: mlx-lm's %s always has q/k/v biases", c.ModelType)
	}
	return nil
}
