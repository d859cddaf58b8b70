package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/progress"
	"github.com/moeforge/moeforge/quantize"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

func init() { addCommand(newQuantizeCmd) }

type quantizeFlags struct {
	in, out        string
	force          bool
	method         string
	bits           int
	format         string
	moeCalib       string
	lmHead         bool
	dynamic        string
	groupSize      int
	descAct        bool
	sym            bool
	damp           float64
	staticGroups   bool
	trueSequential bool
	calib          string
	calibIDs       string
	calibChat      string
	seqlen         int
	splitAt        float64
	nsamples       int
	seed           uint64
	minTokens      int
	fallback       string
	spill          string
	chunkTokens    int
	maxShard       string
	report         string
	asJSON         bool
	resume         bool
}

func newQuantizeCmd() *cobra.Command {
	var f quantizeFlags
	def := quantize.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "quantize --in DIR --out DIR (--calib FILE | --calib-ids FILE | --calib-chat FILE.jsonl | --method rtn) [options]",
		Short: "Quantize a checkpoint to GPTQ 2/3/4/8-bit (AutoGPTQ layout), MoE-aware",
		Long: `quantize writes a GPTQ copy (--bits 2, 3, 4 or 8; default 4) of a float checkpoint (qwen2,
qwen2_moe, mixtral) in the AutoGPTQ "gptq" (v1) layout that transformers/optimum and vLLM load
(or GPTQModel's gptq_v2 with --format gptq_v2), and that moeforge's own forward pass (logits,
eval ppl, generate, verify) runs directly. --dynamic gives modules their own settings in
GPTQModel's syntax; --lm-head quantizes lm_head too. The layout of every width: docs/gptq.md.

GPTQ (ALGORITHMS.md §3) runs layer by layer: the calibration sequences go through the
already-quantized earlier layers; inside a layer the linears are quantized in the true-sequential
groups [q,k,v] → [o] → [shared_expert gate,up] → [shared_expert down] → [experts gate,up] →
[experts down] (dense MLP: [gate,up] → [down]), each group's Hessian taken from inputs computed
with the earlier groups already quantized. A routed expert's Hessian comes from the tokens the
router sends to it; an expert module that sees fewer than --min-expert-tokens tokens (default
in_features/8) gets --expert-fallback (all-tokens: GPTQ with the expert's Hessian augmented by
every token of the layer; rtn: round to nearest) and is listed. The router (mlp.gate),
shared_expert_gate, embeddings, norms and lm_head keep their input dtype; biases of quantized
layers are stored as float16.

Calibration: --calib FILE is text, tokenized with the checkpoint's tokenizer.json; --nsamples
random windows of --seqlen tokens (capped at max_position_embeddings) are drawn (--seed) from
its first --split-at fraction. --calib-ids FILE.safetensors gives the token ids directly
(input_ids [N, T]). --calib-chat FILE.jsonl holds conversations, one {"messages": [...]} per
line, rendered with the checkpoint's chat template (as apply_chat_template does, without a
generation prompt) so that a chat model is calibrated on the format it serves: the first
--nsamples, each cut at --seqlen tokens. --method rtn needs no calibration.

The summary lists every module (routed experts summed per layer and projection) with its
method, calibration tokens, GPTQ loss, damping and time, then every starved expert with its
token count and fallback, and any raised damping; --report FILE.json records every module
(experts one by one). --json prints that report on stdout instead of the summary.`,
		Example: `  moeforge quantize --in testdata/models/qwen2_moe_small --out /tmp/moe-gptq \
      --calib testdata/tinyshakespeare.txt --nsamples 128 --seqlen 256
  moeforge quantize --in DIR --out OUT --calib corpus.txt --group-size -1 --desc-act --report report.json
  moeforge quantize --in DIR --out OUT --calib-ids calib.safetensors --expert-fallback all-tokens
  moeforge quantize --in DIR --out OUT --method rtn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runQuantize(cmd, &f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.in, "in", "", "input checkpoint directory (float: f32, bf16 or f16)")
	fs.StringVar(&f.out, "out", "", "output checkpoint directory (must not exist or be empty, unless --force)")
	fs.BoolVar(&f.force, "force", false, "replace a non-empty output directory")
	fs.StringVar(&f.method, "method", string(def.Method), "gptq or rtn (round to nearest, no calibration)")
	fs.IntVar(&f.bits, "bits", 4, "bits per weight: 2, 3, 4 or 8 (AutoGPTQ layout; vLLM's Marlin kernels run 4 and 8 with --sym)")
	fs.StringVar(&f.format, "format", gptq.FormatV1, "checkpoint_format: gptq (v1, stored zero = zero−1; what vLLM and transformers read) or gptq_v2 (GPTQModel; true zero)")
	fs.StringVar(&f.dynamic, "dynamic", "", `per-module overrides in GPTQModel's syntax, JSON inline or a .json file: {"+:REGEX": {"bits": 8, "group_size": 128, "sym": true, "desc_act": false}, "-:REGEX": {}} (first match wins; -: leaves modules float)`)
	fs.IntVar(&f.groupSize, "group-size", def.Config.GroupSize, "inputs per scale/zero group: -1 (one group per row), 8, 16, 32, 64 or a multiple of 128")
	fs.BoolVar(&f.descAct, "desc-act", false, "act-order: quantize inputs by descending Hessian diagonal (g_idx records the order)")
	fs.BoolVar(&f.sym, "sym", def.Config.Sym, "symmetric grid (zero point 8); --sym=false for asymmetric")
	fs.Float64Var(&f.damp, "damp", def.Config.DampPercent, "damp_percent: H += damp·mean(diag H)·I (raised ×10 when Cholesky fails)")
	fs.BoolVar(&f.staticGroups, "static-groups", false, "compute every group's grid up front from the original weights")
	fs.BoolVar(&f.trueSequential, "true-sequential", def.Config.TrueSequential, "quantize a layer's linears group by group, each on inputs from the quantized earlier groups")
	fs.StringVar(&f.calib, "calib", "", "calibration text file (tokenized with the checkpoint's tokenizer)")
	fs.StringVar(&f.calibIDs, "calib-ids", "", "calibration token ids: safetensors file with input_ids [N, T]")
	fs.StringVar(&f.calibChat, "calib-chat", "", `calibration conversations: JSONL, one {"messages": [...]} per line, rendered with the chat template (the first --nsamples, each cut at --seqlen tokens)`)
	fs.IntVar(&f.seqlen, "seqlen", 2048, "with --calib: tokens per calibration window (capped at max_position_embeddings)")
	fs.Float64Var(&f.splitAt, "split-at", corpus.DefaultSplitAt, "with --calib: windows come from this first fraction of the text")
	fs.IntVar(&f.nsamples, "nsamples", 128, "with --calib: number of calibration windows")
	fs.Uint64Var(&f.seed, "seed", 0, "with --calib: seed of the window positions")
	fs.IntVar(&f.minTokens, "min-expert-tokens", def.MinExpertTokens, "an expert's module routed fewer tokens gets --expert-fallback (-1: in_features/8 of the module; experts with no token always fall back)")
	fs.BoolVar(&f.lmHead, "lm-head", false, "also quantize lm_head (GPTQ from the final norm's outputs; quantization_config.lm_head, as vLLM reads it); a tied head is untied, the embeddings stay float")
	fs.StringVar(&f.moeCalib, "moe-calib", "routed", "routed experts' calibration tokens: routed (the router's choice), all-experts (every token, GPTQModel's ExpertsRoutingBypass) or top-k=N (N experts per token during calibration only)")
	fs.StringVar(&f.fallback, "expert-fallback", string(def.ExpertFallback), "for starved experts: all-tokens (GPTQ with the expert's Hessian plus every token's) or rtn")
	fs.StringVar(&f.spill, "spill", "", "keep calibration activations zstd-compressed in a temporary directory under DIR instead of memory")
	fs.IntVar(&f.chunkTokens, "chunk-tokens", def.ChunkTokens, "calibration tokens per forward pass (bounds activation memory)")
	fs.StringVar(&f.maxShard, "max-shard-size", "5GB", "largest output shard, e.g. 5GB, 500MB")
	fs.StringVar(&f.report, "report", "", "write the per-module report as JSON to this file")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as one JSON document instead of the summary")
	fs.BoolVar(&f.resume, "resume", false, "continue a killed run of the same command after its last finished layer (state kept in the temporary output directory)")
	return cmd
}

// options validates the flags and turns them into quantize.Options.
func (f *quantizeFlags) options(cmd *cobra.Command) (quantize.Options, error) {
	o := quantize.Options{
		Method:          quantize.Method(f.method),
		Config:          gptq.NewConfig(f.groupSize, f.sym, f.descAct, f.staticGroups, f.trueSequential, f.damp),
		MinExpertTokens: f.minTokens, ExpertFallback: quantize.Fallback(f.fallback),
		ChunkTokens: f.chunkTokens, SpillDir: f.spill,
	}
	changed := cmd.Flags().Changed
	switch {
	case f.in == "":
		return o, errors.New("quantize: --in DIR is required")
	case f.out == "":
		return o, errors.New("quantize: --out DIR is required")
	case f.method != "gptq" && f.method != "rtn":
		return o, fmt.Errorf("quantize: --method %q: want gptq or rtn", f.method)
	case f.bits != 2 && f.bits != 3 && f.bits != 4 && f.bits != 8:
		return o, fmt.Errorf("quantize: --bits %d: want 2, 3, 4 or 8", f.bits)
	case f.format != gptq.FormatV1 && f.format != gptq.FormatV2:
		return o, fmt.Errorf("quantize: --format %q: want %s or %s", f.format, gptq.FormatV1, gptq.FormatV2)
	case f.fallback != string(quantize.FallbackRTN) && f.fallback != string(quantize.FallbackAllTokens):
		return o, fmt.Errorf("quantize: --expert-fallback %q: want rtn or all-tokens", f.fallback)
	case !(f.damp > 0 && f.damp < 1):
		return o, fmt.Errorf("quantize: --damp %g: want a value in (0, 1)", f.damp)
	case btoi(f.calib != "")+btoi(f.calibIDs != "")+btoi(f.calibChat != "") > 1:
		return o, errors.New("quantize: give one of --calib, --calib-ids and --calib-chat, not both")
	case f.method == "gptq" && f.calib == "" && f.calibIDs == "" && f.calibChat == "":
		return o, errors.New("quantize: GPTQ needs calibration data: --calib FILE (text), --calib-ids FILE (token ids) or --calib-chat FILE.jsonl (conversations); or use --method rtn")
	case f.method == "gptq" && f.calibIDs != "" && (changed("seqlen") || changed("nsamples") || changed("split-at") || changed("seed")):
		return o, errors.New("quantize: --seqlen, --nsamples, --split-at and --seed choose windows of --calib text; --calib-ids gives the sequences")
	case f.seqlen < 2 || f.nsamples < 1:
		return o, errors.New("quantize: --seqlen must be at least 2 and --nsamples at least 1")
	case f.splitAt <= 0 || f.splitAt > 1:
		return o, fmt.Errorf("quantize: --split-at %g: want a fraction in (0, 1]", f.splitAt)
	case f.minTokens < -1:
		return o, fmt.Errorf("quantize: --min-expert-tokens %d: want -1 (default rule) or a count ≥ 0", f.minTokens)
	case f.chunkTokens < 1:
		return o, errors.New("quantize: --chunk-tokens must be positive")
	}
	if f.method == "rtn" {
		// One command line switches methods: what only GPTQ uses is ignored.
		var ignored []string
		for _, name := range []string{"calib", "calib-ids", "calib-chat", "seqlen", "nsamples", "split-at", "seed", "desc-act", "static-groups",
			"damp", "true-sequential", "min-expert-tokens", "expert-fallback", "moe-calib", "spill", "chunk-tokens"} {
			if changed(name) {
				ignored = append(ignored, "--"+name)
			}
		}
		if len(ignored) > 0 && !global.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "moeforge: warning: --method rtn uses no calibration; ignoring %s\n", strings.Join(ignored, ", "))
		}
		f.calib, f.calibIDs, f.calibChat = "", "", ""
		o.Config.DescAct, o.Config.StaticGroups = false, false
	}
	o.Config.Bits, o.Config.CheckpointFormat, o.Config.LMHead = f.bits, f.format, f.lmHead
	if f.method == "gptq" {
		mc, err := quantize.ParseMoECalib(f.moeCalib)
		if err != nil {
			return o, fmt.Errorf("quantize: --%w", err)
		}
		o.MoECalib = mc
	}
	if f.dynamic != "" {
		data := []byte(f.dynamic)
		if t := strings.TrimSpace(f.dynamic); !strings.HasPrefix(t, "{") {
			var err error
			if data, err = os.ReadFile(f.dynamic); err != nil {
				return o, fmt.Errorf("quantize: --dynamic: %w", err)
			}
		}
		d, err := gptq.ParseDynamic(data)
		if err != nil {
			return o, fmt.Errorf("quantize: --dynamic: %w", err)
		}
		o.Config.Dynamic = d
	}
	var err error
	if o.MaxShardSize, err = safetensors.ParseSize(f.maxShard); err != nil {
		return o, fmt.Errorf("quantize: --max-shard-size: %w", err)
	}
	return o, nil
}

// calibration loads the calibration sequences.
func (f *quantizeFlags) calibration(cmd *cobra.Command, ck *hf.Checkpoint) ([][]int, *quantize.Calibration, error) {
	if f.method == "rtn" {
		return nil, nil, nil
	}
	if f.calibIDs != "" {
		seqs, err := quantize.IDCalibration(f.calibIDs, ck.Config.VocabSize)
		if err != nil {
			return nil, nil, err
		}
		return seqs, &quantize.Calibration{Source: f.calibIDs, Sequences: len(seqs), SeqLen: len(seqs[0]), Tokens: len(seqs) * len(seqs[0])}, nil
	}
	if f.calibChat != "" {
		return f.chatCalibration(ck)
	}
	text, err := os.ReadFile(f.calib)
	if err != nil {
		return nil, nil, fmt.Errorf("--calib: %w", err)
	}
	tok, err := tokenizer.Load(ck.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--calib needs the checkpoint's tokenizer: %w", err)
	}
	seqlen := f.seqlen
	if maxPos := ck.Config.MaxPositionEmbeddings; maxPos > 0 && seqlen > maxPos {
		seqlen = maxPos
		if !global.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "moeforge: --seqlen %d exceeds max_position_embeddings; using %d\n", f.seqlen, maxPos)
		}
	}
	seqs, err := corpus.Calibration(string(text), tok.Encode, f.splitAt, f.nsamples, seqlen, f.seed)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.calib, err)
	}
	return seqs, &quantize.Calibration{Source: fmt.Sprintf("%s (first %g, seed %d)", f.calib, f.splitAt, f.seed), Sequences: len(seqs), SeqLen: seqlen, Tokens: len(seqs) * seqlen}, nil
}

// chatCalibration renders the conversations of --calib-chat with the
// checkpoint's chat template: the first --nsamples, cut at --seqlen tokens.
func (f *quantizeFlags) chatCalibration(ck *hf.Checkpoint) ([][]int, *quantize.Calibration, error) {
	data, err := os.ReadFile(f.calibChat)
	if err != nil {
		return nil, nil, fmt.Errorf("--calib-chat: %w", err)
	}
	chat, err := chattemplate.Load(ck.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--calib-chat: %w", err)
	}
	tok, err := tokenizer.Load(ck.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("--calib-chat needs the checkpoint's tokenizer: %w", err)
	}
	texts, err := chat.RenderJSONL(f.calibChat, data)
	if err != nil {
		return nil, nil, err
	}
	seqlen := f.seqlen
	if maxPos := ck.Config.MaxPositionEmbeddings; maxPos > 0 && seqlen > maxPos {
		seqlen = maxPos
	}
	var seqs [][]int
	longest, total := 0, 0
	for i, t := range texts[:min(len(texts), f.nsamples)] {
		ids := tok.Encode(t)
		if len(ids) == 0 {
			return nil, nil, fmt.Errorf("--calib-chat %s: conversation %d renders to no tokens", f.calibChat, i+1)
		}
		if len(ids) > seqlen {
			ids = ids[:seqlen]
		}
		seqs = append(seqs, ids)
		longest, total = max(longest, len(ids)), total+len(ids)
	}
	return seqs, &quantize.Calibration{Source: f.calibChat + " (chat template)", Sequences: len(seqs), SeqLen: longest, Tokens: total}, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func runQuantize(cmd *cobra.Command, f *quantizeFlags) error {
	opt, err := f.options(cmd)
	if err != nil {
		return err
	}
	ck, err := hf.Open(f.in)
	if err != nil {
		return err
	}
	defer ck.Close()
	calib, info, err := f.calibration(cmd, ck)
	if err != nil {
		return err
	}
	opt.Calibration = info
	w, err := hf.Create(f.out, f.force, hf.WriterOptions{MaxShardSize: opt.MaxShardSize})
	if err != nil {
		return outputError(err)
	}
	defer w.Abort()
	if opt.Method == quantize.MethodGPTQ {
		opt.Checkpoint = filepath.Join(w.Dir(), quantize.CheckpointDir)
		if f.resume {
			from, err := quantize.AdoptState(f.out, opt.Checkpoint)
			if err != nil {
				return err
			}
			if from == "" && !global.quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "moeforge: --resume: no interrupted run of %s found; starting from the first layer\n", f.out)
			}
		} else if left := quantize.LeftState(f.out); left != "" && !global.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "moeforge: %s holds an interrupted run; --resume continues it (or remove it)\n", left)
		}
	}
	var bar *progress.Bar
	opt.Progress = func(done, total int, label string) {
		if bar == nil {
			bar = newBar("quantize", total, "modules")
		}
		bar.Label("quantize " + label)
		bar.Set(done)
	}
	rep, err := quantize.RunTo(cmd.Context(), ck, w, calib, opt)
	bar.Done()
	if err != nil {
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	rep.Output = f.out
	if f.report != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.report, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if f.asJSON {
		return writeJSON(cmd.OutOrStdout(), rep)
	}
	if global.quiet {
		fmt.Fprintln(cmd.OutOrStdout(), filepath.Clean(f.out))
		return nil
	}
	return rep.WriteSummary(cmd.OutOrStdout())
}
