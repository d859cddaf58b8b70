package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/verify"
)

func init() { addCommand(newEvalCmd) }

func newEvalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a checkpoint (perplexity)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("eval: choose what to evaluate: moeforge eval ppl MODEL --text FILE")
		},
	}
	cmd.AddCommand(newEvalPPLCmd())
	return cmd
}

type pplResult struct {
	PPL             float64 `json:"ppl"`
	Tokens          int     `json:"tokens"`       // predicted positions: windows × (seqlen − 1)
	InputTokens     int     `json:"input_tokens"` // tokens run through the model: windows × seqlen
	Windows         int     `json:"windows"`
	SeqLen          int     `json:"seqlen"`
	Seconds         float64 `json:"seconds"`           // forward passes and NLL, tokenization excluded
	TokensPerSecond float64 `json:"tokens_per_second"` // input_tokens / seconds
}

func newEvalPPLCmd() *cobra.Command {
	var (
		textPath      string
		splitAt       float64
		windows       int
		seqlen, batch int
		asJSON        bool
		tokenizerPath string
	)
	cmd := &cobra.Command{
		Use:   "ppl MODEL --text FILE",
		Short: "Perplexity on the evaluation windows of a text (ALGORITHMS.md §4)",
		Long: `ppl measures the perplexity of the checkpoint MODEL by the evaluation protocol: the text
is split by characters at --split-at (the evaluation part is what follows the first 90%),
tokenized as one string with the model's own tokenizer.json (no special tokens added), and cut
into consecutive non-overlapping windows of --seqlen tokens from its start; the first --windows
windows are run, each as a separate sequence from position 0, --batch at a time.

Perplexity = exp(mean next-token NLL) over every predicted position: windows × (seqlen − 1)
(16 × 255 = 4080 with the defaults); that count is reported as "tokens". Throughput counts the
tokens run through the model (windows × seqlen) over the time of the forward passes.`,
		Example: `  moeforge eval ppl testdata/models/qwen2_moe_small --text testdata/tinyshakespeare.txt
  moeforge eval ppl ./gptq-model --text corpus.txt --windows 64 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if textPath == "" {
				return errors.New("eval ppl: --text FILE is required (the corpus; its last part is evaluated)")
			}
			if batch <= 0 {
				return fmt.Errorf("eval ppl: --batch %d must be positive", batch)
			}
			if err := corpus.CheckSplit(splitAt); err != nil {
				return fmt.Errorf("eval ppl: --split-at: %w", err)
			}
			raw, err := os.ReadFile(textPath)
			if err != nil {
				return err
			}
			m, tok, err := openWithTokenizer(args[0], tokenizerPath)
			if err != nil {
				return err
			}
			defer m.Close()
			seqs, err := corpus.Eval(string(raw), tok.Encode, splitAt, windows, seqlen)
			if err != nil {
				return fmt.Errorf("%s: %w", textPath, err)
			}
			if err := checkIDs(textPath+" (tokenized)", seqs, m); err != nil {
				return err
			}
			bar := newBar("eval ppl", len(m.Layers)+1, "layers") // one layer-major pass
			start := time.Now()
			ppl, predicted, err := verify.Perplexity(cmd.Context(), m, seqs, batch, func(done, total int) { bar.Set(done) })
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			bar.Done()
			res := pplResult{PPL: ppl, Tokens: predicted, InputTokens: windows * seqlen, Windows: windows, SeqLen: seqlen,
				Seconds: elapsed.Seconds(), TokensPerSecond: float64(windows*seqlen) / elapsed.Seconds()}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "perplexity  %.4f\n", res.PPL)
			fmt.Fprintf(out, "tokens      %d predicted (%d windows × %d tokens of the text after its first %g%%)\n", res.Tokens, windows, seqlen, 100*splitAt)
			fmt.Fprintf(out, "time        %.2fs, %.0f tokens/s\n", res.Seconds, res.TokensPerSecond)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&textPath, "text", "", "text corpus (UTF-8)")
	f.Float64Var(&splitAt, "split-at", corpus.DefaultSplitAt, "fraction of the text (in characters) before the evaluation part")
	f.IntVar(&windows, "windows", corpus.DefaultWindows, "number of evaluation windows")
	f.IntVar(&seqlen, "seqlen", corpus.DefaultSeqLen, "tokens per window")
	f.IntVar(&batch, "batch", 4, "windows per forward pass")
	f.StringVar(&tokenizerPath, "tokenizer", "", "tokenizer.json or a directory holding it (default: MODEL's)")
	f.BoolVar(&asJSON, "json", false, `print {"ppl", "tokens", "tokens_per_second", ...} as JSON`)
	return cmd
}
