package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/outdir"
	"github.com/moeforge/moeforge/model"
)

func init() { addCommand(newLogitsCmd) }

func newLogitsCmd() *cobra.Command {
	var (
		idsPath, outPath string
		batch            int
		force, asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "logits MODEL --ids IN.safetensors --out OUT.safetensors",
		Short: "Run the forward pass on token ids; write logits and next-token NLL",
		Long: `logits runs the checkpoint MODEL on the token ids in IN.safetensors and writes what it
computes to OUT.safetensors, the layout of the fixtures' reference.safetensors:

  input_ids  [B, T]         I64  the ids that were read
  logits     [B, T, vocab]  F32  output logits
  nll        [B, T-1]       F32  negative log-likelihood of token t+1 given tokens ≤ t (nats)

IN must hold a tensor input_ids [B, T] of I64 or I32. Each row is an independent sequence
starting at position 0. Rows are run --batch at a time. OUT is written to a temporary file and
renamed into place when complete; an existing OUT is replaced only with --force.`,
		Example: `  moeforge logits testdata/models/qwen2_moe_small --ids ids.safetensors --out logits.safetensors
  moeforge logits ./gptq-model --ids ids.safetensors --out q.safetensors --force --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if idsPath == "" {
				return errors.New("logits: --ids IN.safetensors is required (a file with input_ids [B, T], I64 or I32)")
			}
			if outPath == "" {
				return errors.New("logits: --out OUT.safetensors is required")
			}
			if batch <= 0 {
				return fmt.Errorf("logits: --batch %d must be positive", batch)
			}
			if err := checkOutputFile(outPath, force); err != nil {
				return err
			}
			seqs, err := corpus.ReadIDs(idsPath, corpus.InputIDs)
			if err != nil {
				return err
			}
			m, err := model.Open(args[0])
			if err != nil {
				return err
			}
			defer m.Close()
			if err := checkIDs(idsPath, seqs, m); err != nil {
				return err
			}

			B, T, V := len(seqs), len(seqs[0]), m.Config.VocabSize
			logits := make([]byte, 4*B*T*V)
			nll := make([]byte, 4*B*(T-1))
			var sum float64
			bar := newBar("logits", B, "seq")
			start := time.Now()
			for i := 0; i < B; i += batch {
				part := seqs[i:min(i+batch, B)]
				l, err := m.Logits(cmd.Context(), &model.Batch{Seqs: part}, nil)
				if err != nil {
					return err
				}
				putFloats(logits[4*i*T*V:], l)
				for k, s := range part {
					for j, v := range model.NextTokenNLL(l[k*T*V:(k+1)*T*V], V, s) {
						binary.LittleEndian.PutUint32(nll[4*((i+k)*(T-1)+j):], math.Float32bits(float32(v)))
						sum += v
					}
				}
				bar.Add(len(part))
			}
			elapsed := time.Since(start)
			bar.Done()

			ids := make([]byte, 8*B*T)
			for b, s := range seqs {
				for t, id := range s {
					binary.LittleEndian.PutUint64(ids[8*(b*T+t):], uint64(id))
				}
			}
			var tensors []*safetensors.Tensor
			for _, p := range []struct {
				name  string
				dtype safetensors.DType
				shape []int
				data  []byte
			}{
				{"input_ids", safetensors.I64, []int{B, T}, ids},
				{"logits", safetensors.F32, []int{B, T, V}, logits},
				{"nll", safetensors.F32, []int{B, T - 1}, nll},
			} {
				t, err := safetensors.NewTensor(p.name, p.dtype, p.shape, p.data)
				if err != nil {
					return err
				}
				tensors = append(tensors, t)
			}
			err = outdir.WriteFile(outPath, func(tmp string) error {
				return safetensors.WriteFile(tmp, tensors, map[string]string{"moeforge": "logits"})
			})
			if err != nil {
				return failed(err)
			}

			predicted := B * (T - 1)
			res := logitsResult{Out: outPath, Sequences: B, Tokens: T, Vocab: V, Predicted: predicted,
				Seconds: elapsed.Seconds(), TokensPerSecond: float64(B*T) / elapsed.Seconds()}
			if predicted > 0 {
				res.MeanNLL = sum / float64(predicted)
				res.PPL = math.Exp(res.MeanNLL)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "wrote %s: logits [%d %d %d] F32, nll [%d %d] F32\n", outPath, B, T, V, B, T-1)
			if predicted > 0 {
				fmt.Fprintf(out, "mean next-token NLL %.4f (perplexity %.4g) over %d positions\n", res.MeanNLL, res.PPL, predicted)
			}
			fmt.Fprintf(out, "%d tokens in %.2fs (%.0f tokens/s)\n", B*T, res.Seconds, res.TokensPerSecond)
			return nil
		},
	}
	cmd.Flags().StringVar(&idsPath, "ids", "", "safetensors file holding input_ids [B, T] (I64 or I32)")
	cmd.Flags().StringVar(&outPath, "out", "", "safetensors file to write")
	cmd.Flags().IntVar(&batch, "batch", 4, "sequences per forward pass")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary instead of text")
	return cmd
}

type logitsResult struct {
	Out             string  `json:"out"`
	Sequences       int     `json:"sequences"`
	Tokens          int     `json:"tokens"` // per sequence
	Vocab           int     `json:"vocab"`
	Predicted       int     `json:"predicted"` // positions with an NLL: sequences × (tokens − 1)
	MeanNLL         float64 `json:"mean_nll"`
	PPL             float64 `json:"ppl"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"` // input tokens per second of forward pass
}

// checkIDs refuses ids outside the model's vocabulary and sequences longer
// than its positions, naming the file and the place.
func checkIDs(path string, seqs [][]int, m *model.Model) error {
	V := m.Config.VocabSize
	for b, s := range seqs {
		for t, id := range s {
			if id < 0 || id >= V {
				return fmt.Errorf("%s: input_ids[%d][%d] = %d is outside the model's vocabulary [0, %d)", path, b, t, id, V)
			}
		}
	}
	if max := m.Config.MaxPositionEmbeddings; max > 0 && len(seqs[0]) > max {
		return fmt.Errorf("%s: input_ids has %d positions per sequence, more than the model's max_position_embeddings=%d", path, len(seqs[0]), max)
	}
	return nil
}

func putFloats(dst []byte, v []float32) {
	for i, x := range v {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
	}
}

// checkOutputFile refuses an output path that exists (unless force) or is a
// directory, and one whose directory does not exist.
func checkOutputFile(path string, force bool) error {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("output %s is a directory, want a file path", path)
		}
		if !force {
			return fmt.Errorf("output %s exists (use --force to replace it)", path)
		}
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return fmt.Errorf("output %s: directory %s does not exist", path, filepath.Dir(path))
	}
	return nil
}
