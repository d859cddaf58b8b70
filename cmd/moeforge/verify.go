package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/model"

	"github.com/moeforge/moeforge/verify"
)

func init() { addCommand(newVerifyCmd) }

type verifyOptions struct {
	ref, cand string
	text      string
	ids       string
	random    int
	seed      uint64
	windows   int
	seqlen    int
	splitAt   float64
	batch     int
	perLayer  bool
	expect    string
	limits    verify.Thresholds
	asJSON    bool
	report    string
}

func newVerifyCmd() *cobra.Command {
	var o verifyOptions
	var maxRelLogit, maxKL, maxTokenKL, minTop1, maxPPLRatio, maxRelHidden float64
	cmd := &cobra.Command{
		Use:   "verify --ref DIR --candidate DIR (--text FILE | --ids FILE | --random N) [thresholds]",
		Short: "Run two checkpoints on the same tokens and gate on parity metrics",
		Long: `verify runs the full forward pass of a reference and a candidate checkpoint on the same
token sequences and measures how far the candidate's logits are from the reference's: max
absolute and relative logit difference, mean and max KL(ref‖cand) per token, top-1 agreement,
and the perplexity of each with their ratio (definitions in docs/verify.md). Any pair moeforge can
run is comparable if the vocabularies match: dense vs upcycled MoE, MoE vs split MoE, float
vs GPTQ int4, bf16 vs f32.

Inputs (exactly one):
  --text FILE    the evaluation protocol: the text after --split-at (by characters),
                 tokenized with the reference's tokenizer.json, first --windows windows of
                 --seqlen tokens
  --ids FILE     token ids from a safetensors file: input_ids [N, T] (I64 or I32)
  --random N     N seeded random sequences of --seqlen ids (--seed)

Thresholds (each optional; --expect sets a preset, explicit flags override it):
  --expect exact       max-rel-logit 1e-4 (an exact conversion in float32)
  --expect quantized   max-kl 0.02, min-top1 0.90, max-ppl-ratio 1.10 (int4; see docs/verify.md)

--per-layer adds the relative error of the hidden state after every layer, the layer where
the candidate first diverges (first layer above --max-rel-hidden, else above --max-rel-logit,
else the largest increase), and per MoE layer with matching experts the share of tokens whose
top-k expert sets agree.

Exit status: 0 when every threshold holds, 1 when one fails (the table marks it FAIL; --json
lists it in "failed"), 2 on bad input (missing files, different vocabularies, ...).`,
		Example: `  moeforge verify --ref dense --candidate moe --text testdata/tinyshakespeare.txt --expect exact
  moeforge verify --ref moe --candidate moe-gptq --text corpus.txt --expect quantized --json
  moeforge verify --ref a --candidate b --random 8 --seqlen 128 --per-layer --max-rel-logit 1e-5
  moeforge verify --ref a --candidate b --ids input_ids.safetensors --report "$GITHUB_STEP_SUMMARY"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			set := func(name string, v float64, dst **float64) {
				if cmd.Flags().Changed(name) {
					*dst = &v
				}
			}
			set("max-rel-logit", maxRelLogit, &o.limits.MaxRelLogit)
			set("max-kl", maxKL, &o.limits.MaxKL)
			set("max-token-kl", maxTokenKL, &o.limits.MaxTokenKL)
			set("min-top1", minTop1, &o.limits.MinTop1)
			set("max-ppl-ratio", maxPPLRatio, &o.limits.MaxPPLRatio)
			set("max-rel-hidden", maxRelHidden, &o.limits.MaxRelHidden)
			return runVerify(cmd, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ref, "ref", "", "reference checkpoint directory")
	f.StringVar(&o.cand, "candidate", "", "candidate checkpoint directory")
	f.StringVar(&o.text, "text", "", "text corpus: evaluation windows from its last 10% (see --split-at)")
	f.StringVar(&o.ids, "ids", "", "safetensors file with input_ids [N, T] (I64 or I32)")
	f.IntVar(&o.random, "random", 0, "compare on N seeded random sequences")
	f.Uint64Var(&o.seed, "seed", 0, "seed of --random")
	f.IntVar(&o.windows, "windows", corpus.DefaultWindows, "number of --text windows")
	f.IntVar(&o.seqlen, "seqlen", corpus.DefaultSeqLen, "tokens per sequence for --text and --random")
	f.Float64Var(&o.splitAt, "split-at", corpus.DefaultSplitAt, "--text: the evaluation part starts at this fraction of the characters")
	f.IntVar(&o.batch, "batch", 4, "sequences run together (bounds memory)")
	f.BoolVar(&o.perLayer, "per-layer", false, "compare the hidden state after every layer and the expert selection")
	f.StringVar(&o.expect, "expect", "", "threshold preset: exact or quantized")
	f.Float64Var(&maxRelLogit, "max-rel-logit", 0, "fail when max |Δlogit| / max |logit| exceeds this")
	f.Float64Var(&maxKL, "max-kl", 0, "fail when the mean KL(ref‖cand) per token (nats) exceeds this")
	f.Float64Var(&maxTokenKL, "max-token-kl", 0, "fail when the KL at any one token (nats) exceeds this")
	f.Float64Var(&minTop1, "min-top1", 0, "fail when the top-1 agreement (share in [0, 1]) is below this")
	f.Float64Var(&maxPPLRatio, "max-ppl-ratio", 0, "fail when candidate / reference perplexity exceeds this")
	f.Float64Var(&maxRelHidden, "max-rel-hidden", 0, "with --per-layer: fail when any layer's |Δh| / max |h| exceeds this")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON document (schema in docs/verify.md)")
	f.StringVar(&o.report, "report", "", "also write a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
	return cmd
}

func runVerify(cmd *cobra.Command, o *verifyOptions) error {
	th, err := o.thresholds()
	if err != nil {
		return err
	}
	if err := o.checkFlags(cmd); err != nil {
		return err
	}
	ref, err := model.Open(o.ref)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	defer ref.Close()
	cand, err := model.Open(o.cand)
	if err != nil {
		return fmt.Errorf("candidate: %w", err)
	}
	defer cand.Close()
	if err := verify.CheckCompatible(ref, cand, o.perLayer); err != nil {
		return fmt.Errorf("%s vs %s: %w", o.ref, o.cand, err)
	}
	seqs, in, err := o.inputs(cmd, ref.Config.VocabSize)
	if err != nil {
		return err
	}
	maxPos := ref.Config.MaxPositionEmbeddings
	if m := cand.Config.MaxPositionEmbeddings; m > 0 && (maxPos == 0 || m < maxPos) {
		maxPos = m
	}
	if err := verify.CheckIDs(seqs, ref.Config.VocabSize, maxPos); err != nil {
		src := in.File
		if src == "" {
			src = "--random"
		}
		return fmt.Errorf("%s: %w", src, err)
	}

	bar := newBar("verify", 2*(len(ref.Layers)+1), "layers") // a layer-major pass of each model
	if o.perLayer {
		bar = newBar("verify", len(seqs), "seq")
	}
	res, err := verify.Run(cmd.Context(), ref, cand, seqs, verify.Options{
		BatchSize: o.batch, PerLayer: o.perLayer,
		Progress: func(done, _ int) { bar.Set(done) },
	})
	bar.Done()
	if err != nil {
		return failed(err)
	}
	rep, err := verify.NewReport(in, res, th)
	if err != nil {
		return err
	}
	if o.report != "" {
		var md bytes.Buffer
		if err := rep.WriteMarkdown(&md); err != nil {
			return err
		}
		if err := writeFileAtomic(o.report, md.Bytes()); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	out := cmd.OutOrStdout()
	if o.asJSON {
		err = writeJSON(out, rep)
	} else {
		err = rep.WriteText(out)
	}
	if err != nil {
		return err
	}
	if !rep.Pass {
		return errSilentFailure
	}
	return nil
}

// thresholds resolves --expect and the explicit threshold flags.
func (o *verifyOptions) thresholds() (verify.Thresholds, error) {
	var th verify.Thresholds
	if o.expect != "" {
		p, err := verify.Preset(o.expect)
		if err != nil {
			return th, fmt.Errorf("--expect: %w", err)
		}
		th = p
	}
	th = th.Override(o.limits)
	if err := th.Validate(); err != nil {
		return th, err
	}
	if th.MaxRelHidden != nil && !o.perLayer {
		return th, errors.New("--max-rel-hidden needs --per-layer")
	}
	return th, nil
}

// checkFlags rejects missing or conflicting flags before any model is loaded.
func (o *verifyOptions) checkFlags(cmd *cobra.Command) error {
	if o.ref == "" || o.cand == "" {
		return errors.New("verify: --ref DIR and --candidate DIR are required")
	}
	var sources []string
	if o.text != "" {
		sources = append(sources, "--text")
	}
	if o.ids != "" {
		sources = append(sources, "--ids")
	}
	if cmd.Flags().Changed("random") {
		if o.random <= 0 {
			return fmt.Errorf("--random %d: want a positive number of sequences", o.random)
		}
		sources = append(sources, "--random")
	}
	switch len(sources) {
	case 0:
		return errors.New("verify: give the inputs: --text FILE, --ids FILE or --random N")
	case 1:
	default:
		return fmt.Errorf("verify: give one input source, not %s", strings.Join(sources, " and "))
	}
	for _, only := range []struct {
		flag    string
		sources []string
	}{{"windows", []string{"--text"}}, {"split-at", []string{"--text"}}, {"seed", []string{"--random"}}, {"seqlen", []string{"--text", "--random"}}} {
		if cmd.Flags().Changed(only.flag) && !slices.Contains(only.sources, sources[0]) {
			return fmt.Errorf("verify: --%s applies to %s only", only.flag, strings.Join(only.sources, " and "))
		}
	}
	switch {
	case o.batch < 1:
		return fmt.Errorf("--batch %d: want at least 1", o.batch)
	case o.seqlen < 2:
		return fmt.Errorf("--seqlen %d: want at least 2 tokens", o.seqlen)
	case o.windows < 1:
		return fmt.Errorf("--windows %d: want at least 1", o.windows)
	}
	return nil
}

// inputs builds the token sequences from --text, --ids or --random.
func (o *verifyOptions) inputs(cmd *cobra.Command, vocab int) ([][]int, verify.Inputs, error) {
	in := verify.Inputs{Ref: o.ref, Candidate: o.cand, Batch: o.batch}
	var seqs [][]int
	switch {
	case o.text != "":
		in.Source, in.File, in.SplitAt = "text", o.text, &o.splitAt
		raw, err := os.ReadFile(o.text)
		if err != nil {
			return nil, in, err
		}
		if err := corpus.CheckSplit(o.splitAt); err != nil {
			return nil, in, fmt.Errorf("--split-at: %w", err)
		}
		tok, err := loadTokenizer(o.ref)
		if err != nil {
			return nil, in, fmt.Errorf("--text needs the reference's tokenizer.json: %w", err)
		}
		o.warnTokenizer(cmd)
		seqs, err = corpus.Eval(string(raw), tok.Encode, o.splitAt, o.windows, o.seqlen)
		if err != nil {
			return nil, in, fmt.Errorf("%s (split at %g): %w", o.text, o.splitAt, err)
		}
	case o.ids != "":
		in.Source, in.File = "ids", o.ids
		var err error
		if seqs, err = corpus.ReadIDs(o.ids, corpus.AnyIDs); err != nil {
			return nil, in, err
		}
	default:
		in.Source, in.Seed = "random", &o.seed
		seqs = corpus.RandomIDs(o.random, o.seqlen, vocab, o.seed)
	}
	in.Sequences = len(seqs)
	if len(seqs) > 0 {
		in.SeqLen = len(seqs[0])
	}
	return seqs, in, nil
}

// warnTokenizer tells on stderr when the candidate ships a different
// tokenizer.json: the text is tokenized with the reference's only.
func (o *verifyOptions) warnTokenizer(cmd *cobra.Command) {
	a, errA := os.ReadFile(filepath.Join(o.ref, "tokenizer.json"))
	b, errB := os.ReadFile(filepath.Join(o.cand, "tokenizer.json"))
	if errA == nil && errB == nil && !bytes.Equal(a, b) && !global.quiet {
		fmt.Fprintf(cmd.ErrOrStderr(), "moeforge verify: warning: %s/tokenizer.json differs from the reference's; the text is tokenized with the reference's\n", o.cand)
	}
}

// writeFileAtomic writes data to path through a temporary sibling file, so
// that a reader never sees half a report.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
