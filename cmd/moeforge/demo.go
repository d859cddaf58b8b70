package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/outdir"
	"github.com/moeforge/moeforge/pipeline"
)

func init() { addCommand(newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var (
		testdata string
		keep     string
		nsamples int
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on the small models in testdata/ and print a summary",
		Long: `demo runs moeforge end to end on the small trained models shipped in testdata/models, in a
temporary directory:

  1. upcycle qwen2_dense_small into the Qwen1.5-MoE shape (hybrid-exact: 16 experts × 128,
     top-4, shared expert 512) and verify it reproduces the dense logits (≤ 1e-4 relative);
  2. split every expert of qwen2_moe_small in two and verify it exactly;
  3. quantize qwen2_moe_small to int4 with GPTQ (128 calibration windows of 256 tokens) and RTN;
  4. evaluate the perplexity of float, RTN and GPTQ on the 16 evaluation windows, and require
     GPTQ to stay close to float (KL ≤ 0.4× RTN's, top-1 ≥ 97%, perplexity within 0.5%).

It exits 1 if any step fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if testdata == "" {
				root, err := fixture.Root()
				if err != nil {
					return fmt.Errorf("demo needs the repository's testdata/ (%v): run it inside the moeforge repository or pass --testdata DIR", err)
				}
				testdata = root
			}
			work := keep
			if work == "" {
				dir, remove, err := outdir.TempDir("moeforge-demo-")
				if err != nil {
					return err
				}
				defer remove()
				work = dir
			} else if err := os.MkdirAll(work, 0o755); err != nil {
				return err
			}
			opt := pipeline.Options{Testdata: testdata, WorkDir: work, CalibSamples: nsamples}
			if !global.quiet && !asJSON {
				opt.Log = cmd.ErrOrStderr()
			}
			res, err := pipeline.Run(cmd.Context(), opt)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = writeJSON(out, res)
			} else {
				err = res.WriteTable(out)
			}
			if err != nil {
				return err
			}
			if !res.Pass {
				return errSilentFailure
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&testdata, "testdata", "", "directory holding models/ and tinyshakespeare.txt (default: testdata/ of the repository around the working directory)")
	cmd.Flags().StringVar(&keep, "keep", "", "write the models into this directory and keep them (default: a temporary directory, removed)")
	cmd.Flags().IntVar(&nsamples, "nsamples", 128, "GPTQ calibration windows of 256 tokens")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	return cmd
}
