package convert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// Summary describes what a conversion builds; its JSON form is the
// --json output of `moeforge convert`.
type Summary struct {
	Recipe     string  `json:"recipe"` // "upcycle" or "split"
	Input      string  `json:"input"`
	InputArch  hf.Arch `json:"input_architecture"`
	OutputArch hf.Arch `json:"output_architecture"`
	// Exact is true when the output computes the input's logits up to float
	// rounding (exact upcycling modes and every split).
	Exact bool `json:"exact"`
	// DTypes lists the output tensors' dtypes.
	DTypes []safetensors.DType `json:"dtypes"`

	MoELayers    []int `json:"moe_layers"`
	DenseLayers  []int `json:"dense_layers"`
	Experts      int   `json:"experts"`
	TopK         int   `json:"top_k"`
	ExpertSize   int   `json:"expert_size"`
	SharedSize   int   `json:"shared_size"` // 0: no shared expert (mixtral)
	NormTopKProb bool  `json:"norm_topk_prob"`

	ParamsBefore Params `json:"params_before"`
	ParamsAfter  Params `json:"params_after"`

	Upcycle *UpcycleSummary `json:"upcycle,omitempty"`
	Split   *SplitSummary   `json:"split,omitempty"`
	Carve   *CarveSummary   `json:"carve,omitempty"`

	// Notes are facts a user should know (padding, slicing, dtype changes,
	// input tensors left out).
	Notes []string `json:"notes,omitempty"`
}

// UpcycleSummary is what Upcycle did to each FFN.
type UpcycleSummary struct {
	Mode Mode `json:"mode"`
	// FFNSize is the dense intermediate_size F.
	FFNSize int `json:"ffn_size"`
	// PiecesPerFFN is G = ⌈F / expert_size⌉ (qwen2-report: expert-size
	// slices per FFN copy, rounded up).
	PiecesPerFFN int `json:"pieces_per_ffn"`
	// SharedPieces is the number of pieces in the shared expert (hybrid-exact).
	SharedPieces int `json:"shared_pieces"`
	// RoutedPieces is the number of distinct routed pieces per FFN: the
	// experts are Replicas copies of them (0 for qwen2-report).
	RoutedPieces int `json:"routed_pieces"`
	Replicas     int `json:"replicas"`
	// SelectedReplicas is top_k / RoutedPieces in the grouped modes.
	SelectedReplicas int `json:"selected_replicas"`
	// PaddingNeurons is the number of zero neurons appended to every FFN
	// (F % expert_size ≠ 0 with --pad zero).
	PaddingNeurons int `json:"padding_neurons"`
	// Copies and DiscardedNeurons describe qwen2-report's slicing: the FFN
	// is replicated Copies times and the neurons left over after the
	// experts and the shared expert are discarded (per layer).
	Copies           int `json:"ffn_copies"`
	DiscardedNeurons int `json:"discarded_neurons"`
	// SharedExpert says what the shared expert holds.
	SharedExpert string `json:"shared_expert"`
	// RoutedDownScale and SharedDownScale multiply down_proj (0: silent).
	RoutedDownScale float64 `json:"routed_down_scale"`
	SharedDownScale float64 `json:"shared_down_scale"`
	// ExpertScale multiplies every routed expert's gate, up and down
	// (megatron-scaled), else 1.
	ExpertScale    float64 `json:"expert_scale"`
	RouterInit     string  `json:"router_init"`
	Shuffle        bool    `json:"shuffle"`
	ReinitFraction float64 `json:"reinit_fraction"`
	Reinit         string  `json:"reinit,omitempty"`
	Seed           uint64  `json:"seed"`
}

// SplitSummary is what Split did to each expert.
type SplitSummary struct {
	Factor           int     `json:"factor"`
	ExpertsBefore    int     `json:"experts_before"`
	TopKBefore       int     `json:"top_k_before"`
	ExpertSizeBefore int     `json:"expert_size_before"`
	DownScale        float64 `json:"down_scale"`
}

func (s *Summary) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// finish fills the fields that depend on the planned tensors.
func (s *Summary) finish(p *Plan) {
	for _, t := range p.Tensors {
		if !slices.Contains(s.DTypes, t.DType) {
			s.DTypes = append(s.DTypes, t.DType)
		}
	}
	slices.Sort(s.DTypes)
	s.ParamsAfter = paramsOf(p.Config)
}

// layerSplit returns the MoE and dense layers of a config.
func layerSplit(c *hf.Config) (moe, dense []int) {
	moe, dense = []int{}, []int{}
	for i := 0; i < c.NumHiddenLayers; i++ {
		if c.IsMoELayer(i) {
			moe = append(moe, i)
		} else {
			dense = append(dense, i)
		}
	}
	return moe, dense
}

// ParseLayerList parses a list of layer indices such as "0,2,5-7".
func ParseLayerList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("layer list %q: %q is not a layer index or range a-b", s, f)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("layer list %q: %q is not a range a-b with a ≤ b", s, f)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("layer list %q names no layer", s)
	}
	return out, nil
}

// FormatLayers writes layer indices compactly: "0-3,6,8-9" ("none" if empty).
func FormatLayers(ls []int) string {
	if len(ls) == 0 {
		return "none"
	}
	var parts []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		} else {
			parts = append(parts, strconv.Itoa(ls[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
