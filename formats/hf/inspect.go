package hf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moeforge/moeforge/formats/gptq"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// Report is what `moeforge inspect` tells about a checkpoint: its
// architecture and sizes from config.json, and, when the weights were read,
// their dtypes, shards, quantization and any tensors the config does not
// account for. Its JSON form is the command's --json output.
type Report struct {
	Path         string `json:"path"`
	Architecture Arch   `json:"architecture"`
	Class        string `json:"class,omitempty"` // architectures[0]
	// Format is the on-disk format when it is not a Hugging Face
	// checkpoint ("mlx"); empty otherwise.
	Format string `json:"format,omitempty"`

	Layers                int     `json:"layers"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"` // dense MLP width (mixtral: the expert width)
	Heads                 int     `json:"heads"`
	KVHeads               int     `json:"kv_heads"`
	HeadDim               int     `json:"head_dim"`
	QKNorm                bool    `json:"qk_norm"`        // RMSNorm of each q and k head before rope (qwen3, qwen3_moe)
	AttentionBias         string  `json:"attention_bias"` // which attention projections have a bias: "q/k/v", "q/k/v/o" or "none"
	SlidingWindowLayers   []int   `json:"sliding_window_layers"`
	SlidingWindow         int     `json:"sliding_window"` // 0 = none
	VocabSize             int     `json:"vocab_size"`
	TiedEmbeddings        bool    `json:"tie_word_embeddings"`
	RopeTheta             float64 `json:"rope_theta"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	ConfigDType           string  `json:"config_dtype,omitempty"` // dtype / torch_dtype in config.json

	// Experts is nil for dense models.
	Experts *ExpertsReport `json:"experts"`

	// ParamsTotal and ParamsActive count the model's parameters from its
	// config, embeddings and lm_head included (Config.ParamCounts).
	ParamsTotal  int64 `json:"params_total"`
	ParamsActive int64 `json:"params_active"`

	// WeightsRead is false when only a config was given: the fields below are then empty.
	WeightsRead bool                   `json:"weights_read"`
	Tensors     int                    `json:"tensors"`
	DTypes      map[string]DTypeReport `json:"dtypes"`
	Shards      ShardsReport           `json:"shards"`
	// Quantization is nil for float checkpoints.
	Quantization *QuantReport `json:"quantization"`
	// Unexpected lists tensors the config does not account for.
	Unexpected []string `json:"unexpected_tensors"`
}

// ExpertsReport describes the sparse blocks of an MoE model.
type ExpertsReport struct {
	Routed       int    `json:"routed"`
	PerToken     int    `json:"per_token"`
	Width        int    `json:"width"`
	SharedWidth  int    `json:"shared_width"` // 0: no shared expert
	NormTopKProb bool   `json:"norm_topk_prob"`
	MoELayers    []int  `json:"moe_layers"`
	DenseLayers  []int  `json:"dense_layers"`
	Layout       string `json:"layout,omitempty"` // "per-expert" or "fused"; empty when weights were not read
}

// DTypeReport counts the tensors of one dtype.
type DTypeReport struct {
	Tensors int   `json:"tensors"`
	Bytes   int64 `json:"bytes"`
}

// ShardsReport describes the safetensors files of a checkpoint.
type ShardsReport struct {
	Count       int         `json:"count"`
	Bytes       int64       `json:"bytes"`        // file sizes, headers included
	TensorBytes int64       `json:"tensor_bytes"` // tensor data (the index's total_size)
	Indexed     bool        `json:"indexed"`      // model.safetensors.index.json present
	Files       []ShardFile `json:"files"`
}

// ShardFile is one safetensors file of a checkpoint.
type ShardFile struct {
	Name    string `json:"name"`
	Tensors int    `json:"tensors"`
	Bytes   int64  `json:"bytes"`
}

// QuantReport is the GPTQ quantization of a checkpoint.
type QuantReport struct {
	Method           string `json:"method"`
	Bits             int    `json:"bits"`
	GroupSize        int    `json:"group_size"`
	DescAct          bool   `json:"desc_act"`
	Sym              bool   `json:"sym"`
	CheckpointFormat string `json:"checkpoint_format,omitempty"`
	// QuantizedLinears of Linears are stored as GPTQ tensors (0 of 0 when
	// the weights were not read).
	QuantizedLinears int `json:"quantized_linears"`
	Linears          int `json:"linears"`
	// LinearsByBits counts the quantized linears per code width (after
	// quantization_config.dynamic), e.g. {"4": 120, "8": 45}.
	LinearsByBits map[string]int `json:"linears_by_bits,omitempty"`
	// DynamicRules is the number of quantization_config.dynamic rules.
	DynamicRules int `json:"dynamic_rules,omitempty"`
	// LMHead: lm_head is GPTQ-quantized (quantization_config.lm_head).
	LMHead bool `json:"lm_head,omitempty"`
}

// Inspect reports on a checkpoint directory, or on a config alone: path may
// be a config.json file, or a directory holding a config.json and no
// .safetensors files. A directory with weights is opened with Open, so every
// error Open finds (a malformed shard, a tensor of the wrong shape) is
// returned.
func Inspect(path string) (*Report, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file or directory", path)
		}
		return nil, err
	}
	if !st.IsDir() || !hasWeights(path) {
		cfg, err := ReadConfig(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%s: neither a checkpoint directory nor a config.json (no config.json, no .safetensors files)", path)
			}
			return nil, err
		}
		return ConfigReport(path, cfg), nil
	}
	ck, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	return ck.Report()
}

// hasWeights reports whether dir holds safetensors weights (possibly
// compressed, which Open then reports) or their index.
func hasWeights(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFile)); err == nil {
		return true
	}
	for _, pattern := range []string{"*.safetensors", "*.safetensors.zst"} {
		if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) > 0 {
			return true
		}
	}
	return false
}

// ConfigReport fills what a config alone tells (other formats' reports
// start from it).
func ConfigReport(path string, c *Config) *Report {
	r := &Report{
		Path:                  path,
		Architecture:          c.ModelType,
		Layers:                c.NumHiddenLayers,
		HiddenSize:            c.HiddenSize,
		IntermediateSize:      c.IntermediateSize,
		Heads:                 c.NumAttentionHeads,
		KVHeads:               c.NumKeyValueHeads,
		HeadDim:               c.HeadDim,
		QKNorm:                c.HasQKNorm(),
		AttentionBias:         "none",
		SlidingWindowLayers:   []int{},
		VocabSize:             c.VocabSize,
		TiedEmbeddings:        c.TieWordEmbeddings,
		RopeTheta:             c.RopeTheta,
		RMSNormEps:            c.RMSNormEps,
		MaxPositionEmbeddings: c.MaxPositionEmbeddings,
		ConfigDType:           c.DType,
		DTypes:                map[string]DTypeReport{},
		Shards:                ShardsReport{Files: []ShardFile{}},
		Unexpected:            []string{},
	}
	if len(c.Architectures) > 0 {
		r.Class = c.Architectures[0]
	}
	switch {
	case c.QKVBias && c.OProjBias:
		r.AttentionBias = "q/k/v/o"
	case c.QKVBias:
		r.AttentionBias = "q/k/v"
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		if w := c.LayerWindow(i); w > 0 {
			r.SlidingWindow = w
			r.SlidingWindowLayers = append(r.SlidingWindowLayers, i)
		}
	}
	r.ParamsTotal, r.ParamsActive = c.ParamCounts()
	if c.IsMoE() {
		e := &ExpertsReport{
			Routed:       c.NumExperts,
			PerToken:     c.NumExpertsPerTok,
			Width:        c.MoEIntermediateSize,
			NormTopKProb: c.NormTopKProb,
			MoELayers:    []int{},
			DenseLayers:  []int{},
		}
		if c.HasSharedExpert() {
			e.SharedWidth = c.SharedExpertIntermediateSize
		}
		for i := 0; i < c.NumHiddenLayers; i++ {
			if c.IsMoELayer(i) {
				e.MoELayers = append(e.MoELayers, i)
			} else {
				e.DenseLayers = append(e.DenseLayers, i)
			}
		}
		r.Experts = e
	}
	if q := c.Quantization; q != nil {
		r.Quantization = &QuantReport{Method: q.QuantMethod, Bits: q.Bits, GroupSize: q.GroupSize,
			DescAct: q.DescAct, Sym: q.Sym, CheckpointFormat: q.CheckpointFormat, DynamicRules: len(q.Dynamic), LMHead: q.LMHead}
		if r.Quantization.CheckpointFormat == "" {
			r.Quantization.CheckpointFormat = gptq.FormatV1
		}
	}
	return r
}

// Report describes the opened checkpoint: its config, the dtypes and shards
// of its weights, how many linears are GPTQ-quantized, and which tensors the
// config does not account for.
func (ck *Checkpoint) Report() (*Report, error) {
	c := ck.Config
	r := ConfigReport(ck.Dir, c)
	r.WeightsRead = true
	r.Tensors = ck.Weights.Len()
	for _, n := range ck.Weights.Names() {
		t, _ := ck.Weights.Tensor(n)
		d := r.DTypes[string(t.DType)]
		d.Tensors++
		d.Bytes += t.ByteSize()
		r.DTypes[string(t.DType)] = d
	}
	r.Shards = ShardsReport{
		Count:       len(ck.Weights.Files),
		Bytes:       ck.Weights.FileBytes(),
		TensorBytes: ck.Weights.TotalBytes(),
		Indexed:     ck.Weights.Index != nil,
		Files:       []ShardFile{},
	}
	for _, f := range ck.Weights.Files {
		r.Shards.Files = append(r.Shards.Files, ShardFile{Name: filepath.Base(f.Path), Tensors: len(f.Tensors()), Bytes: f.Size()})
	}
	r.Unexpected = append(r.Unexpected, ck.Unexpected...)
	if r.Experts != nil && len(r.Experts.MoELayers) > 0 {
		r.Experts.Layout = "per-expert"
		gateUp, _ := c.FusedExpertTensors(r.Experts.MoELayers[0])
		if _, ok := ck.Weights.Tensor(gateUp); ok {
			r.Experts.Layout = "fused"
		}
	}
	linears, quantized := 0, 0
	for _, l := range ck.linears() {
		lw, err := ck.Linear(l)
		if err != nil {
			return nil, err
		}
		linears++
		if lw.Quantized() {
			quantized++
			bits := gptq.Bits
			if q := c.Quantization; q != nil {
				if lay, err := q.LayoutFor(l.Name); err == nil {
					bits = lay.Bits
				}
			}
			if r.Quantization != nil {
				if r.Quantization.LinearsByBits == nil {
					r.Quantization.LinearsByBits = map[string]int{}
				}
				r.Quantization.LinearsByBits[strconv.Itoa(bits)]++
			}
		}
	}
	if quantized > 0 && r.Quantization == nil {
		r.Quantization = &QuantReport{Method: "gptq (tensors only: config.json has no quantization_config)"}
	}
	if r.Quantization != nil {
		r.Quantization.QuantizedLinears, r.Quantization.Linears = quantized, linears
	}
	return r, nil
}
