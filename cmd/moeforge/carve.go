package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/moeforge/moeforge/convert"
	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/tokenizer"
)

// carveFlags are the flags of `convert upcycle --init carve`.
type carveFlags struct {
	calib    string
	nsamples int
	seqlen   int
	splitAt  float64
	method   string
	shared   string
	features string
	target   string
	markers  int
	refine   int
}

func (f *carveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.calib, "calib", "", "carve: calibration text file (tokenized with the input's tokenizer; windows from its first --split-at)")
	fs.IntVar(&f.nsamples, "nsamples", 64, "carve: number of calibration windows")
	fs.IntVar(&f.seqlen, "calib-seqlen", 256, "carve: tokens per calibration window")
	fs.Float64Var(&f.splitAt, "split-at", corpus.DefaultSplitAt, "carve: calibration windows come from this first fraction of the text")
	fs.StringVar(&f.shared, "carve-shared", convert.CarveByMass, "carve: shared neurons by total activation mass, or by frequency among each token's --carve-markers largest")
	fs.StringVar(&f.features, "carve-features", convert.CarveByMass, "carve: what k-means clusters: mass (each neuron's contributions per token), unit (the same at unit length) or binary (active markers)")
	fs.StringVar(&f.target, "carve-router-target", convert.CarveLogMass, "carve: the least-squares router predicts each expert's log-mass or mass")
	fs.IntVar(&f.markers, "carve-markers", 0, "carve: a token's largest contributions counted as active by --carve-shared frequency and --carve-features binary (default S + K*I)")
	fs.IntVar(&f.refine, "carve-refine", 4, "carve: sweeps of neuron swaps after k-means that raise each token's top-K expert mass on the calibration tokens (0: none)")
	fs.StringVar(&f.method, "carve-method", convert.CarveActivation, "carve: activation (the recipe) or contiguous (baseline: neurons in order, random router; needs no --calib)")
}

func (f *carveFlags) check(mode convert.Mode) error {
	if mode != convert.Carve {
		if f.calib != "" {
			return fmt.Errorf("convert upcycle: --calib is for --init carve (%s uses no calibration data)", mode)
		}
		return nil
	}
	switch {
	case f.method == convert.CarveActivation && f.calib == "":
		return fmt.Errorf("convert upcycle: --init carve needs --calib FILE (calibration text), or --carve-method contiguous")
	case f.nsamples < 1 || f.seqlen < 2 || f.refine < 0:
		return fmt.Errorf("convert upcycle: --nsamples must be positive, --calib-seqlen at least 2 and --carve-refine not negative")
	case !(f.splitAt > 0 && f.splitAt <= 1):
		return fmt.Errorf("convert upcycle: --split-at %g must be in (0, 1]", f.splitAt)
	}
	if f.calib != "" {
		if _, err := os.Stat(f.calib); err != nil {
			return fmt.Errorf("convert upcycle: --calib: %w", err)
		}
	}
	return nil
}

// apply fills the carve options of o: the calibration windows drawn from
// the text with the checkpoint's tokenizer.
func (f *carveFlags) apply(ck *hf.Checkpoint, o *convert.UpcycleOptions) error {
	if o.Mode != convert.Carve {
		return nil
	}
	o.Carve.Method, o.Carve.SharedBy, o.Carve.Features, o.Carve.RouterTarget = f.method, f.shared, f.features, f.target
	o.Carve.MarkerSize = f.markers
	o.Carve.RefineSweeps = f.refine
	if f.refine == 0 {
		o.Carve.RefineSweeps = -1
	}
	if f.calib == "" {
		return nil
	}
	text, err := os.ReadFile(f.calib)
	if err != nil {
		return err
	}
	tok, err := tokenizer.Load(ck.Dir)
	if err != nil {
		return err
	}
	if o.Carve.Calibration, err = corpus.Calibration(string(text), tok.Encode, f.splitAt, f.nsamples, f.seqlen, o.Seed); err != nil {
		return fmt.Errorf("--calib %s: %w", f.calib, err)
	}
	return nil
}

// printCarve writes the carve part of the convert summary.
func printCarve(p func(string, ...any), s *convert.Summary) {
	u, c := s.Upcycle, s.Carve
	p("  experts   %d × %d, top-%d, norm_topk_prob %v (method %s)", s.Experts, s.ExpertSize, s.TopK, s.NormTopKProb, c.Method)
	p("  shared    %d: %s", s.SharedSize, u.SharedExpert)
	p("  router    %s", u.RouterInit)
	p("  combine   %s", c.Combine)
	if c.CalibrationTokens > 0 {
		p("  calib     %d windows, %d tokens; mass = %s", c.CalibrationWindows, c.CalibrationTokens, c.Mass)
		p("  clusters  balanced k-means on %s features, then up to %d sweeps of swaps raising each token's top-%d mass", c.Features, c.RefineSweeps, s.TopK)
		p("  LAYER  SHARED MASS  COVERED MASS  ROUTED COVERED  ORACLE  K/E    K-MEANS IT  SWAPS")
		for _, l := range c.Layers {
			p("  %5d  %10.1f%%  %11.1f%%  %13.1f%%  %5.1f%%  %4.1f%%  %10d  %5d", l.Layer, 100*l.SharedMass, 100*l.CoveredMass,
				100*l.RoutedCovered, 100*l.OracleRoutedCovered, 100*float64(s.TopK)/float64(s.Experts), l.KMeansIterations, l.RefineSwaps)
		}
	}
	p("  random    seed %d", u.Seed)
}
