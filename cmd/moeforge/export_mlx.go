package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/export"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/progress"
)

func init() { addExportCommand(newExportMLXCmd) }

type exportMLXFlags struct {
	in, out   string
	force     bool
	bits      int
	groupSize int
	maxShard  string
	asJSON    bool
	embBits   int
}

func newExportMLXCmd() *cobra.Command {
	var f exportMLXFlags
	cmd := &cobra.Command{
		Use:   "mlx --in DIR --out DIR [--bits 4|8] [--group-size 64]",
		Short: "Write an MLX directory (mlx-lm layout, affine quantization)",
		Long: `export mlx writes the Hugging Face checkpoint --in (qwen2, qwen2_moe, qwen3, qwen3_moe, mixtral)
as a directory that mlx-lm loads: safetensors shards with metadata {"format": "mlx"}, routed experts stacked per
layer under switch_mlp, every quantized linear as weight (uint32 codes packed along the inputs,
least significant first), scales and biases with w = scale·q + bias, and config.json's
"quantization" (also written as "quantization_config") with per-module overrides.

A float input is quantized by MLX's own affine round-to-nearest definition with --bits and
--group-size (32, 64, 128; a linear whose input width is not a multiple stays float); the
embeddings and lm_head at --embedding-bits (default 8; 0 keeps them float; mlx-lm's default
conversion uses --bits, which on the shipped models costs the quantized preset its top-1
agreement), the routers and shared-expert gates at 8 bits (group 64), each a per-module override;
scales and biases are in the input's dtype. A GPTQ 2/4/8-bit input (without
act-order reordering) is repacked exactly, keeping its group size: the float16 scales are kept and
bias = −zero·scale, both float16 for a symmetric checkpoint (zero 8: exact), float32 for an
asymmetric one, so every dequantized weight equals the GPTQ one bit for bit.

Configs mlx-lm would compute differently are refused, naming the key: norm_topk_prob,
decoder_sparse_step, mlp_only_layers (qwen2_moe), head_dim ≠ hidden_size/num_attention_heads
(qwen2, qwen2_moe, mixtral), attention_bias (qwen3, qwen3_moe), sliding-window attention.
moeforge reads the result back (inspect, verify, eval ppl, logits). See docs/mlx.md.`,
		Example: `  moeforge export mlx --in /tmp/mf/moe_gptq --out /tmp/moe-mlx
  moeforge export mlx --in /tmp/mf/qwen2_moe_small --out /tmp/moe-mlx4 --bits 4 --group-size 64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runExportMLX(cmd, &f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.in, "in", "", "input checkpoint directory (float or GPTQ int4)")
	fs.StringVar(&f.out, "out", "", "output directory (must not exist or be empty, unless --force)")
	fs.BoolVar(&f.force, "force", false, "replace an existing output directory")
	fs.IntVar(&f.bits, "bits", 4, "code width for a float input: 4 or 8 (2 is accepted too)")
	fs.IntVar(&f.groupSize, "group-size", 64, "group size for a float input: 32, 64 or 128 (a GPTQ input keeps its own)")
	fs.IntVar(&f.embBits, "embedding-bits", 8, "float input: bits of embed_tokens and lm_head (0 keeps them float)")
	fs.StringVar(&f.maxShard, "max-shard-size", "5GB", "largest shard")
	fs.BoolVar(&f.asJSON, "json", false, "print the summary as one JSON document")
	return cmd
}

func runExportMLX(cmd *cobra.Command, f *exportMLXFlags) error {
	if f.in == "" || f.out == "" {
		return fmt.Errorf("--in and --out are required")
	}
	shard, err := safetensors.ParseSize(f.maxShard)
	if err != nil {
		return fmt.Errorf("--max-shard-size: %w", err)
	}
	opt := export.MLXOptions{Bits: f.bits, GroupSize: f.groupSize, MaxShardSize: shard, Force: f.force, EmbeddingBits: embeddingBits(f.embBits)}
	if err := (mlx.Params{Bits: f.bits, GroupSize: f.groupSize}).Validate(); err != nil {
		return fmt.Errorf("--bits/--group-size: %w", err)
	}
	var bar *progress.Bar
	opt.Progress = func(done, total int) {
		if bar == nil {
			bar = newBar("export mlx", total, "tensors")
		}
		bar.Set(done)
	}
	s, err := export.MLX(cmd.Context(), f.in, f.out, opt)
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		return outputError(err)
	}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), s)
	}
	w := cmd.OutOrStdout()
	how := fmt.Sprintf("float → MLX affine RTN, %d-bit, group %d", s.Bits, s.GroupSize)
	if s.Source == "gptq" {
		how = fmt.Sprintf("GPTQ %d-bit → MLX affine, repacked exactly, group %d", s.Bits, s.GroupSize)
	}
	fmt.Fprintf(w, "wrote        %s (%s)\n", s.Out, s.Arch)
	fmt.Fprintf(w, "how          %s\n", how)
	fmt.Fprintf(w, "modules      %d quantized, %d float, %d per-module overrides; scales/biases %s\n", s.Quantized, s.Float, s.Overrides, s.ScalesDType)
	fmt.Fprintf(w, "tensors      %d in %d shard(s), %s\n", s.Tensors, len(s.Shards), scaled(s.Bytes, "%.1f", " ", byteUnits, "B"))
	fmt.Fprintf(w, "copied       %s\n", strings.Join(s.CopiedFiles, ", "))
	return nil
}

// embeddingBits maps the flag (0 = float) to export.MLXOptions.EmbeddingBits
// (−1 = float).
func embeddingBits(flag int) int {
	if flag == 0 {
		return -1
	}
	return flag
}
