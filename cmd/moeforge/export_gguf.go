package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/export"
	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/internal/progress"
)

func init() { addExportCommand(newExportGGUFCmd) }

type exportGGUFFlags struct {
	in, out, typ, name string
	requantize, force  bool
	asJSON             bool
}

func newExportGGUFCmd() *cobra.Command {
	var f exportGGUFFlags
	cmd := &cobra.Command{
		Use:   "gguf --in DIR --out FILE.gguf",
		Short: "Write a Hugging Face checkpoint as one GGUF file for llama.cpp and ollama",
		Long: `gguf writes a qwen2 (llama.cpp architecture qwen2), qwen2_moe (qwen2moe), qwen3 (qwen3),
qwen3_moe (qwen3moe) or mixtral (llama) checkpoint as one GGUF file with its tokenizer (byte-level
BPE as "gpt2", or a Llama/Mistral SentencePiece-style BPE as "llama", scores from the merge ranks)
and chat template.

--type sets the type of the attention, MLP, shared-expert and routed-expert matrices: f32, f16,
bf16, q8_0 or q4_0 (llama.cpp's reference round-to-nearest quantizers). token_embd and output keep
the checkpoint's dtype for q8_0/q4_0 (else --type); norms, biases, routers and the shared-expert
gate stay F32.
Default: the exact repack for GPTQ (q4_0 for 4-bit, q8_0 for 8-bit), else the checkpoint's dtype.

A GPTQ checkpoint (sym, group size a multiple of 32, desc_act false) becomes Q4_0 (4-bit) or Q8_0
(8-bit) bit for bit: each 32-block takes its group's scale and GPTQ's codes unchanged. Other GPTQ
settings are refused unless --requantize (dequantize, then round to nearest).

Refused, naming the config key or tensor, because llama.cpp would compute something else:
qwen2_moe with norm_topk_prob true, dense layers (mlp_only_layers, decoder_sparse_step > 1), no
shared expert, or an all-zero shared_expert_gate (llama.cpp's silu(x)/x gate is NaN at 0);
head_dim other than hidden/heads for qwen2/qwen2_moe; qwen3/qwen3_moe with attention_bias true;
qwen3_moe with norm_topk_prob false or dense layers; sliding-window attention; SentencePiece-style
tokenizers other than the Llama 2 / Mistral pipeline (e.g. a Metaspace pre-tokenizer).

The file is written to a temporary sibling and renamed when complete.`,
		Example: `  moeforge export gguf --in /tmp/mf/qwen2_moe_small --out moe.gguf --type f16
  moeforge export gguf --in /tmp/mf/moe_gptq --out moe-q4_0.gguf          # exact GPTQ repack
  moeforge export gguf --in Mixtral-8x7B --out mixtral.gguf --type q8_0 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runExportGGUF(cmd, f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.in, "in", "", "input checkpoint directory (required)")
	fs.StringVar(&f.out, "out", "", "output .gguf file (required; must not exist unless --force)")
	fs.StringVar(&f.typ, "type", "", "matrix type: f32, f16, bf16, q8_0, q4_0 (default: q4_0/q8_0 for 4/8-bit GPTQ, else the input dtype)")
	fs.StringVar(&f.name, "name", "", "general.name (default: the input directory's name)")
	fs.BoolVar(&f.requantize, "requantize", false, "allow a GPTQ checkpoint that cannot be repacked exactly to be dequantized and quantized again")
	fs.BoolVar(&f.force, "force", false, "replace an existing output file")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON object instead of the table")
	cmd.MarkFlagRequired("in")
	cmd.MarkFlagRequired("out")
	return cmd
}

type exportGGUFResult struct {
	In string `json:"in"`
	*export.GGUFSummary
}

func runExportGGUF(cmd *cobra.Command, f exportGGUFFlags) error {
	opt := export.GGUFOptions{Requantize: f.requantize, Name: f.name, Force: f.force}
	if f.typ != "" {
		t, ok := gguf.ParseType(f.typ)
		if _, known := gguf.FileTypeOf(t); !ok || !known {
			return fmt.Errorf("--type %q: want f32, f16, bf16, q8_0 or q4_0", f.typ)
		}
		opt.Type, opt.TypeSet = t, true
	}
	var bar *progress.Bar
	opt.Progress = func(done, total int) {
		if bar == nil {
			bar = newBar("export gguf", total, "tensors")
		}
		bar.Set(done)
	}
	sum, err := export.GGUF(cmd.Context(), f.in, f.out, opt)
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		return err
	}
	res := exportGGUFResult{In: f.in, GGUFSummary: sum}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "wrote\t%s\n", res.Out)
	fmt.Fprintf(tw, "architecture\t%s\n", sum.Architecture)
	fmt.Fprintf(tw, "type\t%s (general.file_type %d)\n", sum.Type, sum.FileType)
	var types []string
	for _, t := range []string{"F32", "F16", "BF16", "Q8_0", "Q4_0"} {
		if n := sum.TensorTypes[t]; n > 0 {
			types = append(types, fmt.Sprintf("%d %s", n, t))
		}
	}
	fmt.Fprintf(tw, "tensors\t%d (%s)\n", sum.Tensors, strings.Join(types, ", "))
	fmt.Fprintf(tw, "size\t%.1f MB\n", float64(sum.Bytes)/1e6)
	if sum.Repacked+sum.Requantized+sum.Dequantized > 0 {
		fmt.Fprintf(tw, "gptq\t%d repacked exactly, %d requantized, %d dequantized\n", sum.Repacked, sum.Requantized, sum.Dequantized)
	}
	if len(sum.Fallback) > 0 {
		fmt.Fprintf(tw, "f16 fallback\t%s (rows not whole blocks)\n", strings.Join(sum.Fallback, ", "))
	}
	return tw.Flush()
}
