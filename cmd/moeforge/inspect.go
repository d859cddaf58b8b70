package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/convert"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/mlx"
)

func init() { addCommand(newInspectCmd) }

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Describe a checkpoint: architecture, experts, parameters, dtypes, shards, quantization",
		Long: `inspect describes a Hugging Face checkpoint directory (model.safetensors, or shards with
model.safetensors.index.json) or an MLX directory (what moeforge export mlx writes): architecture, layers, attention heads, experts (routed, per token,
widths, which layers are MoE), parameters in total and active per token (embeddings and lm_head
counted), dtypes, shards, GPTQ quantization and tensors the config does not account for.

Every tensor is checked against config.json (presence and shape); any problem is an error.
PATH may also be a config.json file, or a directory holding only a config.json: the counts are
then computed from the config and no weights are read. A GGUF file (llama.cpp) is validated and
described too: architecture, hyperparameters, tokenizer, tensor types and parameters.`,
		Example: `  moeforge inspect path/to/Qwen1.5-MoE-A2.7B
  moeforge inspect --json path/to/checkpoint | jq .params_active
  moeforge inspect testdata/fixtures/configs/qwen1.5-moe-a2.7b.json`,
		Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveDefault // directories and config files
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if isGGUF(args[0]) {
				return inspectGGUF(cmd, args[0], asJSON)
			}
			inspect := hf.Inspect
			if mlx.IsDir(args[0]) {
				inspect = mlx.Report
			}
			r, err := inspect(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			return writeInspectTable(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	return cmd
}

// writeInspectTable prints the report as a two-column table.
func writeInspectTable(w io.Writer, r *hf.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(key, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", key, fmt.Sprintf(format, args...)) }
	rows := func(key string, values []string) {
		for i, v := range values {
			if i > 0 {
				key = ""
			}
			row(key, "%s", v)
		}
	}
	yesNo := map[bool]string{true: "yes", false: "no"}

	row("path", "%s", r.Path)
	if r.Format != "" {
		row("format", "%s", r.Format)
	}
	if r.Class != "" {
		row("architecture", "%s (%s)", r.Architecture, r.Class)
	} else {
		row("architecture", "%s", r.Architecture)
	}
	row("layers", "%d", r.Layers)
	row("hidden size", "%d", r.HiddenSize)
	attn := fmt.Sprintf("%d heads, %d kv heads, head_dim %d, bias %s", r.Heads, r.KVHeads, r.HeadDim, r.AttentionBias)
	if r.QKNorm {
		attn += ", q/k norm"
	}
	if len(r.SlidingWindowLayers) > 0 {
		attn += fmt.Sprintf(", sliding window %d on %d layers", r.SlidingWindow, len(r.SlidingWindowLayers))
	}
	row("attention", "%s", attn)
	if e := r.Experts; e != nil {
		row("experts", "%d routed × %d, %d per token", e.Routed, e.Width, e.PerToken)
		if e.SharedWidth > 0 {
			row("shared expert", "%d (sigmoid gate)", e.SharedWidth)
		} else {
			row("shared expert", "none")
		}
		row("norm_topk_prob", "%t", e.NormTopKProb)
		row("MoE layers", "%s (%d of %d)", layerRanges(e.MoELayers), len(e.MoELayers), r.Layers)
		if len(e.DenseLayers) > 0 {
			row("dense layers", "%s, MLP width %d", layerRanges(e.DenseLayers), r.IntermediateSize)
		}
		if e.Layout != "" {
			row("expert layout", "%s", e.Layout)
		}
	} else {
		row("MLP width", "%d (dense)", r.IntermediateSize)
	}
	row("parameters", "%s total (%s)", groupDigits(r.ParamsTotal), humanCount(r.ParamsTotal))
	row("", "%s active per token (%s)", groupDigits(r.ParamsActive), humanCount(r.ParamsActive))
	row("vocab", "%d", r.VocabSize)
	row("tied embeddings", "%s", yesNo[r.TiedEmbeddings])
	row("rope theta", "%s", strconv.FormatFloat(r.RopeTheta, 'g', -1, 64))
	row("rms norm eps", "%s", strconv.FormatFloat(r.RMSNormEps, 'g', -1, 64))
	row("max positions", "%d", r.MaxPositionEmbeddings)
	if r.ConfigDType != "" {
		row("config dtype", "%s", r.ConfigDType)
	}
	if q := r.Quantization; q != nil {
		desc := fmt.Sprintf("%s %d-bit, group %d, desc_act %t, sym %t, checkpoint_format %s", q.Method, q.Bits, q.GroupSize, q.DescAct, q.Sym, q.CheckpointFormat)
		if r.Format != "" {
			desc = q.Method
		}
		if q.Bits == 0 {
			desc = q.Method
		}
		if q.DynamicRules > 0 {
			desc += fmt.Sprintf(", %d dynamic rules", q.DynamicRules)
		}
		if q.LMHead {
			desc += ", lm_head quantized"
		}
		if r.WeightsRead {
			desc += fmt.Sprintf("; %d of %d linears quantized", q.QuantizedLinears, q.Linears)
			if len(q.LinearsByBits) > 1 {
				var parts []string
				for _, b := range []string{"2", "3", "4", "8"} {
					if n := q.LinearsByBits[b]; n > 0 {
						parts = append(parts, fmt.Sprintf("%d at %s-bit", n, b))
					}
				}
				desc += " (" + strings.Join(parts, ", ") + ")"
			}
		}
		row("quantization", "%s", desc)
	} else {
		row("quantization", "none")
	}
	if !r.WeightsRead {
		row("weights", "not read (config only)")
		return tw.Flush()
	}
	row("tensors", "%d", r.Tensors)
	dtypes := make([]string, 0, len(r.DTypes))
	for d := range r.DTypes {
		dtypes = append(dtypes, d)
	}
	slices.Sort(dtypes)
	var dl []string
	for _, d := range dtypes {
		s := r.DTypes[d]
		dl = append(dl, fmt.Sprintf("%s: %d tensors, %s", d, s.Tensors, humanBytes(s.Bytes)))
	}
	rows("dtypes", dl)
	files := "file"
	if r.Shards.Count != 1 {
		files = "files"
	}
	index := ""
	if r.Shards.Indexed {
		index = ", with index"
	}
	row("shards", "%d %s%s, %s", r.Shards.Count, files, index, humanBytes(r.Shards.Bytes))
	if r.Shards.Count == 1 {
		row("", "%s", r.Shards.Files[0].Name)
	}
	if len(r.Unexpected) == 0 {
		row("unexpected tensors", "none")
	} else {
		rows(fmt.Sprintf("unexpected tensors (%d)", len(r.Unexpected)), r.Unexpected)
	}
	return tw.Flush()
}

// layerRanges writes sorted layer indices compactly: [0 1 2 5] → "0-2, 5"
// (convert's list, spaced for the table).
func layerRanges(layers []int) string {
	return strings.ReplaceAll(convert.FormatLayers(layers), ",", ", ")
}

// humanCount writes a parameter count with a decimal unit: 14.32 B, 2.69 M.
func humanCount(n int64) string { return scaled(n, "%.2f", " ", countUnits, "") }

// humanBytes writes a byte count with a decimal unit, as shard sizes are given.
func humanBytes(n int64) string { return scaled(n, "%.2f", " ", byteUnits, "B") }

// groupDigits writes n with thousands separators: 14315784192 → 14,315,784,192.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
