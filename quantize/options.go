package quantize

import (
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
	// Config is the per-matrix setting (group size, sym, act-order, static
	// groups, damping).
	Config Config
	// TrueSequential quantizes a layer's linears in the groups
	// [q,k,v] → [o] → [shared gate,up] → [shared down] → [experts gate,up]
	// → [experts down] (dense MLP: [gate,up] → [down]), each group's
	// Hessian taken with the earlier groups already quantized. Off: every
	// Hessian comes from the layer's inputs with its original weights.
	TrueSequential bool
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
	// MaxShardSize caps the output shards (safetensors default when 0).
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
	return Options{Method: MethodGPTQ, Config: Config{GroupSize: 128, Sym: true, Damp: 0.01}, TrueSequential: true,
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
