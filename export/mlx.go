package export

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
)

// MLX export (docs/mlx.md): MLX writes the directory mlx-lm loads, in the
// layout of formats/mlx — routed experts stacked per layer under
// switch_mlp, every quantized linear as uint32 codes with scales and biases,
// config.json's "quantization" with per-module overrides. A float input is
// quantized by MLX's affine definition (mlx.Quantize); a GPTQ input is
// repacked exactly (mlx_gptq.go). What differs per architecture (refusals,
// lm_head, config keys mlx-lm needs) lives in mlx_ARCH.go.

// MLXOptions controls an MLX export.
type MLXOptions struct {
	// Bits and GroupSize quantize a float input (mlx-lm's defaults: 4, 64).
	// A GPTQ input keeps its own bits and group size.
	Bits, GroupSize int
	// MaxShardSize caps the bytes per shard (0 = 5 GB, mlx-lm's size).
	MaxShardSize int64
	// Force replaces an existing output directory.
	Force bool
	// EmbeddingBits quantizes embed_tokens and lm_head of a float input
	// with that many bits (group GroupSize, a per-module override); 0 means
	// Bits, as mlx-lm's default conversion does, −1 keeps them float.
	EmbeddingBits int
	// Progress, when set, is told after each tensor how many are written.
	Progress func(done, total int)
}

// mlxRouterParams are the settings of the routers (mlp.gate) and
// shared-expert gates of a float input: 8 bits, group 64, as mlx-lm's
// qwen3_moe and qwen3_next quant_predicate keep them.
var mlxRouterParams = mlx.Params{GroupSize: 64, Bits: 8}

// MLXSummary describes a finished MLX export.
type MLXSummary struct {
	Out          string   `json:"out"`
	Arch         string   `json:"architecture"`
	Source       string   `json:"source"` // "float" or "gptq"
	Bits         int      `json:"bits"`
	GroupSize    int      `json:"group_size"`
	ScalesDType  string   `json:"scales_dtype"`
	Quantized    int      `json:"quantized_modules"`
	Float        int      `json:"float_modules"`
	Overrides    int      `json:"overrides"`
	Tensors      int      `json:"tensors"`
	Shards       []string `json:"shards"`
	Bytes        int64    `json:"bytes"`
	CopiedFiles  []string `json:"copied_files"`
	StackedLayer int      `json:"stacked_moe_layers"`
}

// mlxArch is what differs per architecture in an MLX export.
type mlxArch struct {
	// check refuses what mlx-lm's model file would compute differently
	// from transformers, naming the config key.
	check func(c *hf.Config) error
	// tiedHead: mlx-lm's model always builds lm_head, so tied embeddings
	// are written under its name too.
	tiedHead bool
	// config, when set, adds the keys mlx-lm's ModelArgs require and
	// transformers may leave out.
	config func(c *hf.Config, set func(string, any))
}

var mlxArchs = map[hf.Arch]*mlxArch{}

// checkMLXHeadDim refuses a head_dim other than hidden_size /
// num_attention_heads, which mlx-lm's qwen2, qwen2_moe and mixtral compute
// whatever the config says.
func checkMLXHeadDim(c *hf.Config) error {
	if h := c.HiddenSize / c.NumAttentionHeads; c.HeadDim != h || c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("head_dim=%d: mlx-lm's %s assumes head_dim = hidden_size/num_attention_heads = %d", c.HeadDim, c.ModelType, h)
	}
	return nil
}

// CheckMLX refuses, from the config alone, what mlx-lm's model file for
// the architecture would compute differently from transformers, naming the
// config key.
func CheckMLX(c *hf.Config) error {
	a, ok := mlxArchs[c.ModelType]
	if !ok {
		return fmt.Errorf("model_type=%q: no MLX export (supported: qwen2, qwen2_moe, qwen3, qwen3_moe, mixtral)", c.ModelType)
	}
	if c.SlidingWindow > 0 {
		return fmt.Errorf("sliding_window=%d (use_sliding_window): mlx-lm's %s has no sliding-window attention", c.SlidingWindow, c.ModelType)
	}
	return a.check(c)
}

// MLX writes an MLX directory at out from the Hugging Face checkpoint in:
// a float input is quantized by MLX's affine definition (mlx.Quantize) with
// opt.Bits and opt.GroupSize; a GPTQ input of 2, 4 or 8 bits (symmetric or
// not, without act-order reordering) is repacked exactly. The directory is
// written under a temporary name and renamed on success; on error nothing
// is left behind.
func MLX(ctx context.Context, in, out string, opt MLXOptions) (*MLXSummary, error) {
	// The config is checked before the weights: a refused model is refused
	// for what mlx-lm would do with it, whatever its tensors.
	if c, err := hf.ReadConfig(in); err == nil {
		if err := CheckMLX(c); err != nil {
			return nil, fmt.Errorf("%s: %w", in, err)
		}
	}
	ck, err := hf.Open(in)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	c := ck.Config
	if err := CheckMLX(c); err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	e := &mlxExporter{ck: ck, c: c, arch: mlxArchs[c.ModelType], opt: opt, q: &mlx.Quantization{Mode: mlx.ModeAffine, Modules: map[string]*mlx.Params{}}}
	if c.Quantization != nil {
		lay, err := c.Quantization.Layout()
		if err != nil {
			return nil, fmt.Errorf("%s: quantization_config.%w", in, err)
		}
		if len(c.Quantization.Dynamic) > 0 {
			return nil, fmt.Errorf("%s: quantization_config.dynamic: per-module GPTQ overrides are not repacked into MLX yet; export the float checkpoint instead", in)
		}
		if !slices.Contains(mlx.BitWidths, lay.Bits) {
			return nil, fmt.Errorf("%s: quantization_config.bits=%d: MLX's packing is repacked here only for %v-bit GPTQ", in, lay.Bits, mlx.BitWidths)
		}
		e.layout = lay
		e.gptq = true
		e.q.Params = mlx.Params{Bits: c.Quantization.Bits, GroupSize: c.Quantization.GroupSize}
		// GPTQ scales are float16: kept as they are, and for the symmetric
		// zero 8 the bias −8·scale is a float16 too. An asymmetric zero
		// makes −zero·scale need up to 16 significant bits: float32 then.
		e.scaleDT = safetensors.F16
		if !c.Quantization.Sym {
			e.scaleDT = safetensors.F32
		}
	} else {
		e.q.Params = mlx.Params{Bits: opt.Bits, GroupSize: opt.GroupSize}
		if err := e.q.Params.Validate(); err != nil {
			return nil, err
		}
		emb, err := ck.Tensor(hf.EmbedTokens)
		if err != nil {
			return nil, err
		}
		e.scaleDT = emb.DType
		if e.scaleDT != safetensors.BF16 && e.scaleDT != safetensors.F16 && e.scaleDT != safetensors.F32 {
			e.scaleDT = safetensors.F32
		}
	}
	tensors, err := e.plan()
	if err != nil {
		return nil, err
	}
	if e.gptq {
		// A GPTQ checkpoint whose every layer overrides the default (in ≤
		// group_size everywhere) still needs a valid default.
		if !slices.Contains(mlx.GroupSizes, e.q.GroupSize) {
			e.q.GroupSize = e.firstGroup
		}
	}
	w, err := hf.Create(out, opt.Force, hf.WriterOptions{MaxShardSize: opt.MaxShardSize, Metadata: map[string]string{"format": mlx.FormatMetadata}})
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	shards, err := w.WriteAll(ctx, tensors, opt.Progress)
	if err != nil {
		return nil, err
	}
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	if err := w.WriteFile("config.json", cfg); err != nil {
		return nil, err
	}
	copied, err := w.CopyExtraFiles(in)
	if err != nil {
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	s := &MLXSummary{Out: out, Arch: string(c.ModelType), Source: "float", Bits: e.q.Bits, GroupSize: e.q.GroupSize,
		ScalesDType: string(e.scaleDT), Quantized: e.nQuant, Float: e.nFloat, Overrides: len(e.q.Modules),
		Tensors: len(tensors), Shards: shards, CopiedFiles: copied, StackedLayer: len(c.MoELayers())}
	if e.gptq {
		s.Source = "gptq"
	}
	for _, t := range tensors {
		s.Bytes += t.ByteSize()
	}
	return s, nil
}

type mlxExporter struct {
	ck             *hf.Checkpoint
	c              *hf.Config
	arch           *mlxArch
	opt            MLXOptions
	q              *mlx.Quantization
	gptq           bool
	layout         gptq.Layout // of a GPTQ input
	scaleDT        safetensors.DType
	nQuant, nFloat int
	firstGroup     int
}

// mlxModule is one output module: its MLX path, shape, and the source
// linears (one, or every expert of a stacked projection).
type mlxModule struct {
	name    string
	out, in int
	src     []hf.Linear
}

// plan lists the output tensors in the order of the input checkpoint's
// naming: embeddings, per layer norms (q/k norms included), attention, MLP
// (router, shared expert, its gate, stacked experts), final norm, lm_head.
func (e *mlxExporter) plan() ([]hf.Tensor, error) {
	c := e.c
	var ts []hf.Tensor
	copyT := func(name string) error {
		t, err := e.ck.Tensor(name)
		if err != nil {
			return err
		}
		ts = append(ts, hf.Tensor{Info: safetensors.InfoOf(t), Produce: func() ([]byte, error) { return t.Bytes(), nil }})
		return nil
	}
	embed := hf.Linear{Name: strings.TrimSuffix(hf.EmbedTokens, ".weight"), Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}
	if err := e.module(&ts, mlxModule{embed.Name, embed.Out, embed.In, []hf.Linear{embed}}); err != nil {
		return nil, err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, n := range c.LayerNorms(i) {
			if err := copyT(n.Name); err != nil {
				return nil, err
			}
		}
		var experts [3][]hf.Linear
		for _, l := range c.LayerLinears(i) {
			if l.Kind == hf.KindExpert {
				k := map[hf.Proj]int{hf.GateProj: 0, hf.UpProj: 1, hf.DownProj: 2}[l.Proj]
				experts[k] = append(experts[k], l)
				continue
			}
			if err := e.module(&ts, mlxModule{l.Name, l.Out, l.In, []hf.Linear{l}}); err != nil {
				return nil, err
			}
			if l.Bias {
				if err := copyT(l.Name + ".bias"); err != nil {
					return nil, err
				}
			}
		}
		for k, p := range hf.FFNProjs {
			if len(experts[k]) == 0 {
				continue
			}
			l0 := experts[k][0]
			if err := e.module(&ts, mlxModule{mlx.SwitchModule(c, i, p), l0.Out, l0.In, experts[k]}); err != nil {
				return nil, err
			}
		}
	}
	if err := copyT(hf.FinalNorm); err != nil {
		return nil, err
	}
	head := hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1}
	switch {
	case !c.TieWordEmbeddings:
		if err := e.module(&ts, mlxModule{head.Name, head.Out, head.In, []hf.Linear{head}}); err != nil {
			return nil, err
		}
	case e.arch.tiedHead:
		if err := e.module(&ts, mlxModule{head.Name, head.Out, head.In, []hf.Linear{embed}}); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// linearWeights returns the stored tensors of a source linear (embed_tokens
// included, as a float weight).
func (e *mlxExporter) linearWeights(l hf.Linear) (*hf.LinearWeights, error) {
	if l.Name+".weight" == hf.EmbedTokens {
		t, err := e.ck.Tensor(hf.EmbedTokens)
		if err != nil {
			return nil, err
		}
		return &hf.LinearWeights{Name: l.Name, Weight: t}, nil
	}
	return e.ck.Linear(hf.Linear{Name: l.Name, Out: l.Out, In: l.In, Kind: l.Kind, Layer: l.Layer, Expert: l.Expert, Proj: l.Proj})
}

// module plans the tensors of one output module.
func (e *mlxExporter) module(ts *[]hf.Tensor, m mlxModule) error {
	lead := []int{}
	if len(m.src) > 1 || m.src[0].Kind == hf.KindExpert {
		lead = []int{len(m.src)}
	}
	shape := func(d ...int) []int { return append(append([]int(nil), lead...), d...) }
	first, err := e.linearWeights(m.src[0])
	if err != nil {
		return err
	}
	var p mlx.Params
	quantize := false
	if e.gptq {
		if first.Quantized() {
			groups := 0
			if len(first.Scales.Shape) == 2 {
				groups = first.Scales.Shape[0]
			}
			if groups < 1 || m.in%groups != 0 {
				return fmt.Errorf("%s: %s.scales has shape %v: not whole groups of %d inputs", e.ck.Dir, m.src[0].Name, first.Scales.Shape, m.in)
			}
			p = mlx.Params{Bits: e.q.Bits, GroupSize: m.in / groups}
			if err := p.Validate(); err != nil {
				return fmt.Errorf("%s: %s: GPTQ group of %d inputs cannot be repacked: %v", e.ck.Dir, m.src[0].Name, p.GroupSize, err)
			}
			if e.firstGroup == 0 {
				e.firstGroup = p.GroupSize
			}
			if p != e.q.Params {
				e.q.Modules[m.name] = &p
			}
			quantize = true
		}
	} else {
		switch m.src[0].Kind {
		case hf.KindRouter, hf.KindSharedExpertGate:
			if mlxRouterParams.Fits(m.in) {
				p, quantize = mlxRouterParams, true
				if p != e.q.Params {
					e.q.Modules[m.name] = &p
				}
			}
		case hf.KindLMHead:
			p = e.q.Params
			if e.opt.EmbeddingBits > 0 {
				p.Bits = e.opt.EmbeddingBits
			}
			if e.opt.EmbeddingBits >= 0 && p.Fits(m.in) {
				if err := p.Validate(); err != nil {
					return fmt.Errorf("embedding bits: %w", err)
				}
				quantize = true
				if p != e.q.Params {
					e.q.Modules[m.name] = &p
				}
			}
		default:
			if e.q.Fits(m.in) {
				p, quantize = e.q.Params, true
			}
		}
	}
	if !quantize {
		e.nFloat++
		dt := first.Weight.DType
		*ts = append(*ts, hf.Tensor{Info: safetensors.Info{Name: m.name + ".weight", DType: dt, Shape: shape(m.out, m.in)},
			Produce: func() ([]byte, error) {
				var b []byte
				for _, l := range m.src {
					lw, err := e.linearWeights(l)
					if err != nil {
						return nil, err
					}
					if lw.Quantized() || lw.Weight.DType != dt {
						return nil, fmt.Errorf("%s: %s is not stored like %s", e.ck.Dir, l.Name, m.src[0].Name)
					}
					b = append(b, lw.Weight.Bytes()...)
				}
				return b, nil
			}})
		return nil
	}
	e.nQuant++
	// The three tensors are computed together when the weight is produced
	// and handed out in order.
	var scales, biases []byte
	per := p.PerWord()
	groups := m.in / p.GroupSize
	*ts = append(*ts,
		hf.Tensor{Info: safetensors.Info{Name: m.name + ".weight", DType: safetensors.U32, Shape: shape(m.out, m.in/per)},
			Produce: func() ([]byte, error) {
				var words []byte
				scales, biases = nil, nil
				for _, l := range m.src {
					q, s, b, err := e.quantizeLinear(l, m.out, m.in, p)
					if err != nil {
						return nil, err
					}
					for _, w := range q {
						words = binary.LittleEndian.AppendUint32(words, w)
					}
					scales = append(scales, s...)
					biases = append(biases, b...)
				}
				return words, nil
			}},
		hf.Tensor{Info: safetensors.Info{Name: m.name + mlx.SuffixScales, DType: e.scaleDT, Shape: shape(m.out, groups)},
			Produce: func() ([]byte, error) { s := scales; scales = nil; return s, nil }},
		hf.Tensor{Info: safetensors.Info{Name: m.name + mlx.SuffixBiases, DType: e.scaleDT, Shape: shape(m.out, groups)},
			Produce: func() ([]byte, error) { b := biases; biases = nil; return b, nil }},
	)
	return nil
}

// quantizeLinear returns the packed words and the encoded scales and biases
// of one source linear.
func (e *mlxExporter) quantizeLinear(l hf.Linear, out, in int, p mlx.Params) ([]uint32, []byte, []byte, error) {
	lw, err := e.linearWeights(l)
	if err != nil {
		return nil, nil, nil, err
	}
	if lw.Quantized() {
		return e.repack(l, lw, out, in, p)
	}
	w, err := lw.Weight.Float32()
	if err != nil {
		return nil, nil, nil, err
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, nil, fmt.Errorf("%s: tensor %s holds %g at element %d", e.ck.Dir, lw.Weight.Name, v, i)
		}
	}
	codes, s, b := mlx.Quantize(w, out, in, p)
	return mlx.Pack(codes, out, in, p), encodeFloats(s, e.scaleDT), encodeFloats(b, e.scaleDT), nil
}

func u16Bytes(v []uint16) []byte {
	b := make([]byte, 0, 2*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

// encodeFloats rounds float32 values to dt (round to nearest even) and
// returns their bytes.
func encodeFloats(v []float32, dt safetensors.DType) []byte {
	switch dt {
	case safetensors.BF16:
		u := make([]uint16, len(v))
		half.NarrowBF16(u, v)
		return u16Bytes(u)
	case safetensors.F16:
		u := make([]uint16, len(v))
		half.NarrowF16(u, v)
		return u16Bytes(u)
	}
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// config returns config.json: the input's keys (GPTQ quantization_config
// dropped), the keys the architecture's mlx-lm ModelArgs need (rope_theta
// for all), and
// "quantization" with, as mlx-lm also writes it, "quantization_config".
func (e *mlxExporter) config() ([]byte, error) {
	c := e.c.Clone()
	c.Quantization = nil
	base, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(base, &out); err != nil {
		return nil, err
	}
	// mlx-lm's qwen2 and mixtral ModelArgs read only a top-level
	// rope_theta (defaulting to 1e6), qwen3's require it: a transformers 5
	// config keeps it in rope_parameters, so it is written at the top too.
	out["rope_theta"] = e.c.RopeTheta
	if e.arch.config != nil {
		e.arch.config(e.c, func(k string, v any) { out[k] = v })
	}
	q, err := e.q.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out["quantization"] = json.RawMessage(q)
	out["quantization_config"] = json.RawMessage(q)
	return json.MarshalIndent(out, "", "  ")
}
