package quantize

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
)

// DefaultChunkTokens is how many calibration tokens a layer's forward pass
// processes at once.
const DefaultChunkTokens = 8192

// Options configure Run.
type Options struct {
	Method Method
	// Config holds the settings (bits, group size, sym, act-order, static
	// groups, damp_percent, true-sequential) and is written as
	// quantize_config.json and quantization_config; its zero fields take
	// gptq.Config.WithDefaults.
	//
	// Config.TrueSequential quantizes a layer's linears in the groups
	// [q,k,v] → [o] → [shared gate,up] → [shared down] → [experts gate,up]
	// → [experts down] (dense MLP: [gate,up] → [down]), each group's
	// Hessian taken with the earlier groups already quantized. Off: every
	// Hessian comes from the layer's inputs with its original weights.
	Config gptq.Config
	// MinExpertTokens is the number of routed tokens below which an expert's
	// module gets ExpertFallback instead of plain GPTQ; negative selects
	// DefaultMinTokens of the module's input width. An expert that saw no
	// token always falls back.
	MinExpertTokens int
	ExpertFallback  Fallback
	// MoECalib chooses the calibration tokens of routed experts' Hessians
	// (zero value: routed).
	MoECalib MoECalib
	// ChunkTokens bounds the tokens of one forward pass (DefaultChunkTokens
	// when 0).
	ChunkTokens int
	// SpillDir, when set, keeps the calibration activations zstd-compressed
	// in a temporary directory under it instead of in memory.
	SpillDir string
	// MaxShardSize caps the output shards of Run (safetensors default when
	// 0); RunTo uses its writer's.
	MaxShardSize int64
	// Checkpoint, when set, is a directory for the run's resume state:
	// after every finished layer its output tensors and the next layer's
	// inputs are saved there, and a run given a directory holding the
	// state of the same run (same input, settings and calibration)
	// continues after its last finished layer, with a byte-identical
	// output. The directory is removed when the run succeeds.
	Checkpoint string
	// Calibration describes the calibration data for the report.
	Calibration *Calibration
	// Progress, when set, is told after every quantized module how many of
	// the total are done, with a label naming the layer.
	Progress func(done, total int, label string)

	// observe, when set (tests), receives every quantized module.
	observe func(name string, l *gptq.Layer)
	// inject (tests) is called at the start of every stage of seqLayer;
	// an error stops the run there, as if it were killed.
	inject func(layer int, stage string) error
	// legacySchedule (tests) quantizes true-sequentially with gptqLayer's
	// capture passes (each stage reruns the layer from its input) instead
	// of seqLayer.
	legacySchedule bool
	// fullPasses (tests) runs every capture pass to the end of the layer.
	fullPasses bool
	// calibSeqs is the number of calibration sequences given to Run.
	calibSeqs int
}

// validate checks every option (and the per-matrix settings against every
// linear of c) before any work, and fills the defaults. Errors name the
// option.
func (opt *Options) validate(c *hf.Config) error {
	if opt.Method != MethodGPTQ && opt.Method != MethodRTN {
		return fmt.Errorf("method %q: want gptq or rtn", opt.Method)
	}
	if opt.Method == MethodRTN {
		opt.Config.DescAct, opt.Config.StaticGroups = false, false
	}
	if _, err := ParseMoECalib(opt.MoECalib.String()); err != nil || (opt.MoECalib.Mode == MoECalibTopK && opt.MoECalib.TopK < 1) {
		return fmt.Errorf("moe-calib %+v: want routed, all-experts or top-k=N (N ≥ 1)", opt.MoECalib)
	}
	if opt.ExpertFallback != FallbackRTN && opt.ExpertFallback != FallbackAllTokens {
		return fmt.Errorf("expert fallback %q: want rtn or all-tokens", opt.ExpertFallback)
	}
	if opt.ChunkTokens <= 0 {
		opt.ChunkTokens = DefaultChunkTokens
	}
	opt.Config = opt.Config.WithDefaults()
	if err := checkGroupSize(opt.Config.GroupSize); err != nil {
		return err
	}
	if err := opt.Config.Validate(); err != nil {
		return err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		var first *hf.Linear
		var firstCfg gptq.Config
		var firstOK bool
		for _, l := range c.LayerLinears(i) {
			mc, ok := opt.module(l)
			if l.Kind == hf.KindExpert {
				// vLLM fuses a layer's routed experts (gate, up and down of
				// every expert) into one kernel with one setting.
				if first == nil {
					first, firstCfg, firstOK = &l, mc, ok
				} else if ok != firstOK || settingsOf(mc, ok) != settingsOf(firstCfg, firstOK) {
					return fmt.Errorf("dynamic gives layer %d's experts different settings (%s: %s, %s: %s): vLLM fuses a layer's experts into one kernel, so one rule must cover them all",
						i, first.Name, settingsOf(firstCfg, firstOK), l.Name, settingsOf(mc, ok))
				}
			}
			if ok {
				if err := checkGroupSize(mc.GroupSize); err != nil {
					return fmt.Errorf("%s: %w", l.Name, err)
				}
				if err := checkConfig(mc, l.Out, l.In); err != nil {
					return fmt.Errorf("%s: %w", l.Name, err)
				}
			}
		}
	}
	if opt.Config.LMHead {
		mc, ok := opt.module(lmHeadSpec(c))
		if !ok {
			return errors.New("lm_head: --lm-head asks to quantize it but a dynamic -: rule leaves it float")
		}
		if err := checkConfig(mc, c.VocabSize, c.HiddenSize); err != nil {
			return fmt.Errorf("lm_head: %w", err)
		}
	}
	if opt.Method == MethodGPTQ && opt.calibSeqs == 0 {
		return errors.New("GPTQ needs calibration sequences")
	}
	return nil
}

// DefaultMinTokens is the default expert token threshold for a module with
// in inputs: in/8 (ALGORITHMS.md §3), at least 1.
//
// Measured on qwen2_moe_a60 (TestExpertFallbackHeldOut, -tags slow): on
// held-out text, GPTQ on an expert's own routed tokens beats round-to-nearest
// by 5-20× in output error even with 16-64 tokens, and beats the all-token
// Hessian from about in/8 tokens up; below that the all-token Hessian is as
// good or better, and for experts with no token it halves RTN's error.
func DefaultMinTokens(in int) int { return max(in/8, 1) }

// DefaultOptions are the settings of `moeforge quantize` without flags:
// GPTQ, group 128, symmetric, damp 0.01, true-sequential, starved experts
// (fewer than in_features/8 tokens) quantized with the all-token Hessian.
func DefaultOptions() Options {
	return Options{Method: MethodGPTQ, Config: gptq.NewConfig(128, true, false, false, true, 0.01),
		MinExpertTokens: -1, ExpertFallback: FallbackAllTokens, ChunkTokens: DefaultChunkTokens}
}

// module returns the settings of a linear layer (Config after its dynamic
// rules) and whether it is quantized: quantizable and not left float by a
// "-:" rule.
func (opt *Options) module(l hf.Linear) (gptq.Config, bool) {
	mc, ok := opt.Config.Module(l.Name)
	mc.Dynamic, mc.LMHead = nil, false
	return mc, ok && (quantizable(l) || (l.Kind == hf.KindLMHead && opt.Config.LMHead))
}

// lmHeadSpec is the lm_head linear of c.
func lmHeadSpec(c *hf.Config) hf.Linear {
	return hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}
}

// quantizes reports whether the linear layer l is quantized.
func (opt *Options) quantizes(l hf.Linear) bool {
	_, ok := opt.module(l)
	return ok
}

// settingsOf describes the per-module settings dynamic rules may change.
func settingsOf(c gptq.Config, quantized bool) string {
	if !quantized {
		return "not quantized"
	}
	return fmt.Sprintf("%d-bit group %d sym %t desc_act %t", c.Bits, c.GroupSize, c.Sym, c.DescAct)
}

// quantizable reports whether a linear layer's kind is quantized:
// attention, dense MLP, shared and routed experts; never the router
// (mlp.gate), the shared expert gate or lm_head, whatever the dynamic rules
// say (vLLM builds them unquantized, and a quantized router flips expert
// choices).
func quantizable(l hf.Linear) bool {
	switch l.Kind {
	case hf.KindAttention, hf.KindMLP, hf.KindExpert, hf.KindSharedExpert:
		return true
	}
	return false
}

// groupOf is the true-sequential group (1..6) of a quantized linear.
func groupOf(l hf.Linear) int {
	switch l.Kind {
	case hf.KindAttention:
		if strings.HasSuffix(l.Name, hf.OProj) {
			return 2
		}
		return 1
	case hf.KindMLP, hf.KindSharedExpert:
		if l.Proj == hf.DownProj {
			return 4
		}
		return 3
	}
	if l.Proj == hf.DownProj {
		return 6
	}
	return 5
}

// GroupNames names the true-sequential groups of ModuleReport.Group.
var GroupNames = []string{"q,k,v", "o", "mlp/shared_expert gate,up", "mlp/shared_expert down", "experts gate,up", "experts down"}
