package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/moeforge/moeforge/convert"
	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/verify"
)

func init() { addCommand(newConvertCmd) }

func newConvertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Build fine-grained MoE checkpoints: upcycle a dense model, or split coarse experts",
		Long: `convert writes a new checkpoint directory derived from an existing one:

  upcycle  dense qwen2 → fine-grained qwen2_moe, by cutting each FFN into expert pieces
  split    mixtral / qwen2_moe → the same model with every expert cut into g finer ones

Outputs are complete Hugging Face checkpoints (per-expert tensor names, full config,
tokenizer and other files carried over) that transformers loads without missing or
unexpected keys. Tensors are computed one at a time from the memory-mapped input and
streamed to the output shards, so memory stays about one tensor whatever the model size.`,
	}
	cmd.AddCommand(newConvertUpcycleCmd(), newConvertSplitCmd())
	return cmd
}

// convertFlags are the flags both recipes share.
type convertFlags struct {
	in, out  string
	force    bool
	dtype    string
	maxShard string
	asJSON   bool
	verify   bool
	text     string
	random   int
	windows  int
	seqlen   int
}

func (f *convertFlags) register(fs *pflag.FlagSet, inHelp string) {
	fs.StringVar(&f.in, "in", "", inHelp)
	fs.StringVar(&f.out, "out", "", "output checkpoint directory (must not exist or be empty, unless --force)")
	fs.BoolVar(&f.force, "force", false, "replace a non-empty output directory")
	fs.StringVar(&f.dtype, "dtype", "", "output dtype: f32, bf16 or f16 (default: the input's)")
	fs.StringVar(&f.maxShard, "max-shard-size", "5GB", "largest shard, e.g. 5GB, 500MB, 2GiB")
	fs.BoolVar(&f.asJSON, "json", false, "print the summary (and parity metrics) as one JSON document")
	fs.BoolVar(&f.verify, "verify", false, "after writing, run input and output on the same tokens and print the parity metrics (exact recipes exit 1 when max relative logit difference > 1e-4)")
	fs.StringVar(&f.text, "text", "", "with --verify: text file whose last 10% is tokenized with the model's tokenizer into --windows windows (evaluation protocol)")
	fs.IntVar(&f.random, "random", 0, "with --verify: N windows of random token ids instead of text (default when no --text: 4)")
	fs.IntVar(&f.windows, "windows", 4, "with --verify --text: number of windows")
	fs.IntVar(&f.seqlen, "seqlen", 128, "with --verify: tokens per window")
}

func (f *convertFlags) check(cmd string) error {
	switch {
	case f.in == "":
		return fmt.Errorf("convert %s: --in DIR is required", cmd)
	case f.out == "":
		return fmt.Errorf("convert %s: --out DIR is required", cmd)
	case !f.verify && (f.text != "" || f.random != 0):
		return fmt.Errorf("convert %s: --text and --random choose the tokens of --verify; add --verify", cmd)
	case f.text != "" && f.random != 0:
		return fmt.Errorf("convert %s: give --text or --random, not both", cmd)
	case f.random < 0 || f.windows < 1 || f.seqlen < 2:
		return fmt.Errorf("convert %s: --random, --windows must be positive and --seqlen at least 2", cmd)
	}
	if f.text != "" {
		if _, err := os.Stat(f.text); err != nil {
			return fmt.Errorf("convert %s: --text: %w", cmd, err)
		}
	}
	return nil
}

func newConvertUpcycleCmd() *cobra.Command {
	var (
		f          convertFlags
		mode       string
		o          convert.UpcycleOptions
		norm       bool
		reinit     float64
		moeLayers  string
		pad        string
		sparseStep int
		cf         carveFlags
	)
	cmd := &cobra.Command{
		Use:   "upcycle --in DENSE --out DIR --init MODE [options]",
		Short: "Turn a dense qwen2/qwen3 checkpoint into a fine-grained qwen2_moe/qwen3_moe checkpoint",
		Long: `upcycle cuts each dense FFN (width F) into pieces of --expert-size I neurons and builds a
Qwen2-MoE model from them (ALGORITHMS.md §1), or a Qwen3-MoE model from a qwen3 input. G = F/I
pieces per FFN. qwen3_moe has no shared expert: the modes that put FFN neurons there
(shared-exact, hybrid-exact, qwen2-report) are refused for it, virtual-group and
megatron-scaled leave out their silent one, and carve clusters every neuron into routed
experts. Modes (--init):

  shared-exact     the whole FFN becomes the shared expert (shared_expert_gate 0, so sigmoid = 1/2,
                   and down_proj x2); routed experts are FFN pieces with a zero down_proj (silent).
                   Exact, any norm_topk_prob. --shared-size defaults to F (larger pads zero neurons).
  virtual-group    E = R*G experts: R replicas of the G pieces, a replica's pieces adjacent and
                   sharing one random router row; top-k = k*G selects whole replicas;
                   norm_topk_prob true; down_proj xG. Exact. The shared expert is silent.
  hybrid-exact     the Qwen1.5-MoE shape: S/I pieces (--shared-size S, a multiple of I) form the
                   shared expert (gate 0, down x2), the other G-S/I form virtual groups
                   (down x(G-S/I)). Exact.
  megatron-scaled  virtual-group's experts and router with norm_topk_prob false; every expert's
                   gate, up and down x(E*G/K)^(1/3) (arXiv 2410.07524). Approximate. Silent shared.
  qwen2-report     ceil((E*I+S)/F) copies of the FFN, each shuffled, sliced into E experts and the
                   shared expert; --reinit-fraction (default 0.5) of each one's parameters redrawn.
                   Approximate, training-oriented.
  carve            activation-aware carving (docs/carve.md): from --calib text, per layer, the
                   neurons of largest activation mass form the shared expert (gate 0, down x2),
                   the rest are clustered into E equal experts of co-activated neurons (balanced
                   k-means, then swaps raising each token's top-K mass), and a least-squares
                   router predicts each expert's log activation mass; norm_topk_prob true, routed
                   down xK. S + E*I must equal F (defaults: I = F/16, S = F/4, K for half of the
                   FFN active). Into qwen3_moe (no shared expert): S = 0, all F neurons are
                   clustered into E = F/I experts. Approximate: only S + K*I neurons run per token.

Defaults: --expert-size F/4; --experts 4x the routed pieces of one FFN (4 replicas); --top-k the
routed pieces of one FFN (one replica: a token uses one FFN's worth of routed parameters);
--shared-size F (shared-exact), half the pieces (hybrid-exact), else I.

Random draws (seeded by --seed, PCG): router rows ~ N(0, initializer_range^2) from the config
(0.02 if absent), one per replica in the grouped modes; --shuffle permutations; re-initialized
elements (each independently with probability --reinit-fraction) ~ N(0, sigma^2), sigma = std of
the dense projection they come from. Same input, options and seed: byte-identical output.

Refused, with a proposal: E or K not a multiple of the routed pieces (grouped modes), K > E,
F not a multiple of I without --pad zero (zero neurons are exact; qwen2-report slices instead),
a --norm-topk-prob that contradicts the mode, a re-init fraction in an exact mode, and an exact
mode whose down_proj factor is not a power of two when the output is 16-bit (bf16/f16 would
round it): pass --dtype f32 for those.

With --verify the input and output run on the same tokens and the parity metrics are printed;
for exact modes a max relative logit difference above 1e-4 exits 1 (the output is kept).`,
		Example: `  # the Qwen1.5-MoE shape from a dense model with F=1024: 4 shared pieces, 4 replicas of 4 pieces
  moeforge convert upcycle --in testdata/models/qwen2_dense_small --out /tmp/moe \
      --init hybrid-exact --expert-size 128 --shared-size 512 --experts 16 --top-k 4 --verify

  # Qwen2-report style, 32 experts of 256, top-8, half of each expert re-initialized
  moeforge convert upcycle --in DENSE --out DIR --init qwen2-report --experts 32 --top-k 8 --seed 1

  # only every other layer sparse, JSON summary
  moeforge convert upcycle --in DENSE --out DIR --init virtual-group --decoder-sparse-step 2 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check("upcycle"); err != nil {
				return err
			}
			if mode == "" {
				return fmt.Errorf("convert upcycle: --init MODE is required (one of %s)", convertModeList())
			}
			var err error
			if o.Mode, err = convert.ParseMode(mode); err != nil {
				return err
			}
			if cmd.Flags().Changed("norm-topk-prob") {
				o.NormTopKProb = &norm
			}
			if cmd.Flags().Changed("reinit-fraction") {
				o.ReinitFraction = &reinit
			}
			if moeLayers != "" {
				if o.MoELayers, err = convert.ParseLayerList(moeLayers); err != nil {
					return fmt.Errorf("--moe-layers: %w", err)
				}
			}
			o.DecoderSparseStep = sparseStep
			switch pad {
			case "none":
			case "zero":
				o.PadZeros = true
			default:
				return fmt.Errorf("--pad %q: want none or zero", pad)
			}
			if o.DType, err = convert.ParseDType(f.dtype); err != nil {
				return fmt.Errorf("--dtype: %w", err)
			}
			if err := cf.check(o.Mode); err != nil {
				return err
			}
			return runConvert(cmd, &f, o.Seed, func(ck *hf.Checkpoint) (*convert.Plan, error) {
				if err := cf.apply(ck, &o); err != nil {
					return nil, err
				}
				return convert.Upcycle(ck, o)
			})
		},
	}
	fs := cmd.Flags()
	f.register(fs, "dense qwen2 or qwen3 checkpoint directory")
	fs.StringVar(&mode, "init", "", "initialization: "+convertModeList())
	fs.IntVar(&o.Experts, "experts", 0, "routed experts E (default 4x the routed pieces per FFN)")
	fs.IntVar(&o.TopK, "top-k", 0, "experts per token K (default: the routed pieces per FFN)")
	fs.IntVar(&o.ExpertSize, "expert-size", 0, "expert width I = moe_intermediate_size (default F/4)")
	fs.IntVar(&o.SharedSize, "shared-size", 0, "shared expert width S in neurons (default: F for shared-exact, G/2 pieces for hybrid-exact, else I)")
	fs.BoolVar(&norm, "norm-topk-prob", false, "renormalize the top-k weights (virtual-group, hybrid-exact: must be true; megatron-scaled: false; others: default false)")
	fs.Float64Var(&reinit, "reinit-fraction", 0, "share of each expert's parameters redrawn at random (qwen2-report default 0.5; exact modes: 0)")
	fs.BoolVar(&o.Shuffle, "shuffle", false, "permute each FFN's neurons (seeded) before cutting pieces; function-preserving")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of every random draw")
	fs.StringVar(&moeLayers, "moe-layers", "", "layers that become MoE, e.g. 0,2,4-7 (others keep their dense MLP)")
	fs.IntVar(&sparseStep, "decoder-sparse-step", 0, "make layers i with (i+1) % n == 0 MoE (default 1: all)")
	fs.StringVar(&pad, "pad", "none", "when F is not a multiple of --expert-size: none (refuse) or zero (pad every FFN with zero neurons)")
	cf.register(fs)
	cmd.MarkFlagsMutuallyExclusive("moe-layers", "decoder-sparse-step")
	return cmd
}

func convertModeList() string {
	var names []string
	for _, m := range convert.Modes {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}

func newConvertSplitCmd() *cobra.Command {
	var (
		f      convertFlags
		factor int
	)
	cmd := &cobra.Command{
		Use:   "split --in MOE --out DIR --factor g",
		Short: "Cut every expert of a mixtral, qwen2_moe or qwen3_moe checkpoint into g finer experts, exactly",
		Long: `split turns each expert e of width I into experts e*g ... e*g+g-1 of width I/g (adjacent, so that
their identical router logits select them together), copies e's router row to each, multiplies
num_experts and num_experts_per_tok by g and each piece's down_proj by g (ALGORITHMS.md §2). Each
piece gets probability p_e/g, so the output computes the same logits, with or without
norm_topk_prob. Shared experts, their gates and dense layers are copied unchanged.

Refused: I not a multiple of g (a proposal of factors is given), and a factor that is not a power
of two when the output is bf16/f16 (x g would round): pass --dtype f32 for those.

With --verify input and output run on the same tokens; a max relative logit difference above
1e-4 exits 1 (the output is kept).`,
		Example: `  # Mixtral-style 8 x 14336 top-2 into 64 x 1792 top-16
  moeforge convert split --in Mixtral-8x7B --out /tmp/mixtral-64 --factor 8

  moeforge convert split --in testdata/models/qwen2_moe_small --out /tmp/split --factor 4 --verify --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check("split"); err != nil {
				return err
			}
			if factor == 0 {
				return errors.New("convert split: --factor g is required (each expert becomes g experts)")
			}
			dtype, err := convert.ParseDType(f.dtype)
			if err != nil {
				return fmt.Errorf("--dtype: %w", err)
			}
			return runConvert(cmd, &f, 0, func(ck *hf.Checkpoint) (*convert.Plan, error) {
				return convert.Split(ck, convert.SplitOptions{Factor: factor, DType: dtype})
			})
		},
	}
	f.register(cmd.Flags(), "mixtral, qwen2_moe or qwen3_moe checkpoint directory")
	cmd.Flags().IntVar(&factor, "factor", 0, "g: every expert becomes g experts of width I/g")
	return cmd
}

// convertReport is the --json document.
type convertReport struct {
	Output  string               `json:"output"`
	Summary *convert.Summary     `json:"summary"`
	Files   *convert.WriteResult `json:"files"`
	Verify  *convertVerifyReport `json:"verify,omitempty"`
}

// convertVerifyReport is the parity check after writing.
type convertVerifyReport struct {
	Tokens  string         `json:"tokens"` // "random ids" or the text file
	Windows int            `json:"windows"`
	SeqLen  int            `json:"seqlen"`
	Metrics verify.Metrics `json:"metrics"`
	// Threshold and Pass are set for exact recipes.
	Threshold float64 `json:"threshold,omitempty"`
	Pass      *bool   `json:"pass,omitempty"`
}

// runConvert opens the input, plans, writes atomically, optionally verifies
// and reports.
func runConvert(cmd *cobra.Command, f *convertFlags, seed uint64, build func(*hf.Checkpoint) (*convert.Plan, error)) error {
	maxShard, err := safetensors.ParseSize(f.maxShard)
	if err != nil {
		return fmt.Errorf("--max-shard-size: %w", err)
	}
	ck, err := hf.Open(f.in)
	if err != nil {
		return err
	}
	defer ck.Close()
	plan, err := build(ck)
	if err != nil {
		return err
	}
	w, err := hf.Create(f.out, f.force, hf.WriterOptions{MaxShardSize: maxShard})
	if err != nil {
		return outputError(err)
	}
	defer w.Abort()
	bar := newBar("convert", len(plan.Tensors), "tensors")
	res, err := plan.WriteTo(cmd.Context(), w, func(done, total int) { bar.Set(done) })
	bar.Done()
	if err != nil {
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	rep := &convertReport{Output: f.out, Summary: plan.Summary, Files: res}
	if f.verify {
		if rep.Verify, err = convertVerify(cmd, f, ck, plan.Summary.Exact, seed); err != nil {
			return fmt.Errorf("verify (the output %s was written): %w", f.out, err)
		}
	}
	out := cmd.OutOrStdout()
	if f.asJSON {
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	} else {
		printConvertReport(out, rep)
	}
	if v := rep.Verify; v != nil && v.Pass != nil && !*v.Pass {
		return failed(fmt.Errorf("parity check failed: max relative logit difference %.3g > %g for an exact conversion (output kept in %s)",
			v.Metrics.MaxRelLogitDiff, v.Threshold, f.out))
	}
	return nil
}

// convertVerify runs the input and the written output on the same windows.
func convertVerify(cmd *cobra.Command, f *convertFlags, ck *hf.Checkpoint, exact bool, seed uint64) (*convertVerifyReport, error) {
	ref, err := model.Load(ck)
	if err != nil {
		return nil, err
	}
	cand, err := model.Open(f.out)
	if err != nil {
		return nil, err
	}
	defer cand.Close()
	if maxPos := ref.Config.MaxPositionEmbeddings; maxPos > 0 && f.seqlen > maxPos {
		return nil, fmt.Errorf("--seqlen %d exceeds max_position_embeddings=%d", f.seqlen, maxPos)
	}
	rep := &convertVerifyReport{SeqLen: f.seqlen}
	var seqs [][]int
	if f.text != "" {
		text, err := os.ReadFile(f.text)
		if err != nil {
			return nil, err
		}
		tok, err := tokenizer.Load(f.out)
		if err != nil {
			return nil, err
		}
		if seqs, err = corpus.Eval(string(text), tok.Encode, corpus.DefaultSplitAt, f.windows, f.seqlen); err != nil {
			return nil, fmt.Errorf("%s (last 10%%): %w; use fewer --windows or a smaller --seqlen", f.text, err)
		}
		rep.Tokens = f.text
	} else {
		n := f.random
		if n == 0 {
			n = 4
		}
		seqs = corpus.RandomIDs(n, f.seqlen, ref.Config.VocabSize, seed)
		rep.Tokens = "random ids"
	}
	rep.Windows = len(seqs)
	bar := newBar("verify", 2*(len(ref.Layers)+1), "layers") // a layer-major pass of each model
	rep.Metrics, err = verify.Compare(cmd.Context(), ref, cand, seqs, 4, func(done, total int) { bar.Set(done) })
	bar.Done()
	if err != nil {
		return nil, err
	}
	if exact {
		// The parity of an exact conversion: verify's "exact" preset
		// (max relative logit difference, ALGORITHMS.md §5).
		th, err := verify.Preset("exact")
		if err != nil {
			return nil, err
		}
		checks, err := th.Evaluate(rep.Metrics, nil)
		if err != nil {
			return nil, err
		}
		pass := len(verify.Failed(checks)) == 0
		rep.Threshold, rep.Pass = *th.MaxRelLogit, &pass
	}
	return rep, nil
}

// printConvertReport writes the human summary.
func printConvertReport(w io.Writer, r *convertReport) {
	s := r.Summary
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	dtypes := make([]string, len(s.DTypes))
	for i, d := range s.DTypes {
		dtypes[i] = string(d)
	}
	kind := "approximate"
	if s.Exact {
		kind = "exact"
	}
	if u := s.Upcycle; u != nil {
		p("upcycle %s (%s): %s → %s in %s", u.Mode, kind, s.InputArch, s.OutputArch, r.Output)
	} else {
		p("split ×%d (%s): %s → %s in %s", s.Split.Factor, kind, s.InputArch, s.OutputArch, r.Output)
	}
	shards := fmt.Sprintf("%d shards", len(r.Files.Shards))
	if len(r.Files.Shards) == 1 {
		shards = r.Files.Shards[0]
	}
	p("  files     %s, %s of %s; copied %s", shards, convertBytes(r.Files.TensorBytes), strings.Join(dtypes, "+"), convertList(r.Files.Copied))
	p("  layers    MoE %s (%d), dense %s", convert.FormatLayers(s.MoELayers), len(s.MoELayers), convert.FormatLayers(s.DenseLayers))
	if s.Carve != nil {
		printCarve(p, s)
	} else if u := s.Upcycle; u != nil {
		p("  experts   %d × %d, top-%d, norm_topk_prob %v", s.Experts, s.ExpertSize, s.TopK, s.NormTopKProb)
		if u.Replicas > 0 {
			p("            %d replicas × %d routed pieces, %d replica(s) selected per token", u.Replicas, u.RoutedPieces, u.SelectedReplicas)
		}
		pad := "no padding"
		if u.PaddingNeurons > 0 {
			pad = fmt.Sprintf("padded with %d zero neurons", u.PaddingNeurons)
		}
		if u.Copies > 0 {
			pad = fmt.Sprintf("%d shuffled copies sliced, %d neurons discarded per layer", u.Copies, u.DiscardedNeurons)
		}
		p("  FFN       %d → %d pieces of %d, %s", u.FFNSize, u.PiecesPerFFN, s.ExpertSize, pad)
		p("  shared    %d: %s", s.SharedSize, u.SharedExpert)
		scale := fmt.Sprintf("routed down_proj ×%g, shared down_proj ×%g", u.RoutedDownScale, u.SharedDownScale)
		if u.ExpertScale != 1 {
			scale += fmt.Sprintf(", routed gate/up/down ×%.6g", u.ExpertScale)
		}
		p("  scaling   %s", scale)
		p("  router    %s", u.RouterInit)
		p("  random    seed %d, shuffle %v, reinit fraction %g", u.Seed, u.Shuffle, u.ReinitFraction)
	} else {
		sp := s.Split
		p("  experts   %d × %d top-%d → %d × %d top-%d, norm_topk_prob %v, down_proj ×%g", sp.ExpertsBefore, sp.ExpertSizeBefore, sp.TopKBefore,
			s.Experts, s.ExpertSize, s.TopK, s.NormTopKProb, sp.DownScale)
		if s.SharedSize > 0 {
			p("  shared    %d (unchanged)", s.SharedSize)
		}
	}
	p("  params    total %s → %s, active %s → %s", convertCount(s.ParamsBefore.Total), convertCount(s.ParamsAfter.Total),
		convertCount(s.ParamsBefore.Active), convertCount(s.ParamsAfter.Active))
	for _, n := range s.Notes {
		p("  note      %s", n)
	}
	if v := r.Verify; v != nil {
		m := v.Metrics
		p("verify: %d windows × %d tokens of %s", v.Windows, v.SeqLen, v.Tokens)
		p("  max |Δlogit| %.3g (relative %.3g), KL mean %.3g max %.3g, top-1 %.2f%%, ppl %.4g → %.4g (ratio %.4f)",
			m.MaxAbsLogitDiff, m.MaxRelLogitDiff, m.MeanKL, m.MaxKL, 100*m.Top1Agreement, m.PPLRef, m.PPLCand, m.PPLRatio)
		if v.Pass != nil {
			verdict := "PASS"
			if !*v.Pass {
				verdict = "FAIL"
			}
			p("  exact: %s (max relative logit difference must be ≤ %g)", verdict, v.Threshold)
		}
	}
}

func convertList(names []string) string {
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

// convertCount writes a parameter count as 1.23M / 14.3B.
func convertCount(n int64) string { return scaled(n, "%.3g", "", countUnits, "") }

// convertBytes writes a size as 12.3 MB.
func convertBytes(n int64) string { return scaled(n, "%.3g", " ", byteUnits, "B") }
