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
	// ChunkTokens bounds the tokens of one forward pass (DefaultChunkTokens
	// when 0).
	ChunkTokens int
	// SpillDir, when set, keeps the calibration activations zstd-compressed
	// in a temporary directory under it instead of in memory.
	SpillDir string
	// MaxShardSize caps the output shards of Run (safetensors default when
	// 0); RunTo uses its writer's.
	MaxShardSize int64
	// Calibration describes the calibration data for the report.
	Calibration *Calibration
	// Progress, when set, is told after every quantized module how many of
	// the total are done, with a label naming the layer.
	Progress func(done, total int, label string)

	// observe, when set (tests), receives every quantized module.
	observe func(name string, l *gptq.Layer)
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
		for _, l := range c.LayerLinears(i) {
			if quantizable(l) {
				if err := checkConfig(opt.Config, l.Out, l.In); err != nil {
					return fmt.Errorf("%s: %w", l.Name, err)
				}
			}
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

// quantizable reports whether a linear layer is quantized: attention, dense
// MLP, shared and routed experts; not the router, the shared expert gate or
// lm_head.
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
