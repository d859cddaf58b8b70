package mlx

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
)

// FormatMetadata is the safetensors __metadata__ "format" of MLX shards.
const FormatMetadata = "mlx"

// Tensor suffixes of an affine-quantized module (besides .weight and .bias).
const (
	SuffixScales = ".scales"
	SuffixBiases = ".biases"
)

// SwitchModule is the module path of the stacked routed experts' projection
// p in MoE layer layer: model.layers.L.mlp.switch_mlp.P (qwen2_moe,
// qwen3_moe) or
// model.layers.L.block_sparse_moe.switch_mlp.P (mixtral), P in gate_proj,
// up_proj, down_proj — the names mlx-lm's sanitize gives the experts it
// stacks. Its tensors carry a leading expert dimension.
func SwitchModule(c *hf.Config, layer int, p hf.Proj) string {
	return strings.TrimSuffix(c.RouterLinear(layer), "gate") + "switch_mlp." + string(p)
}

// Checkpoint is an open MLX directory.
type Checkpoint struct {
	Dir string
	// Config is the model config in moeforge's terms: the quantization keys
	// removed, and tie_word_embeddings false when lm_head is stored (mlx-lm's
	// qwen2_moe always has an lm_head).
	Config *hf.Config
	// Quant is nil for a float MLX directory.
	Quant   *Quantization
	Weights *safetensors.Set
}

// IsDir reports whether dir looks like an MLX directory: its config.json
// has a "quantization" object, or its first shard says "format": "mlx".
func IsDir(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return false
	}
	if q, ok := raw["quantization"]; ok && string(q) != "null" {
		return true
	}
	first := filepath.Join(dir, safetensors.SingleFile)
	if idx, err := os.ReadFile(filepath.Join(dir, safetensors.IndexFile)); err == nil {
		var ix safetensors.Index
		if json.Unmarshal(idx, &ix) == nil {
			names := make([]string, 0, len(ix.WeightMap))
			for _, f := range ix.WeightMap {
				names = append(names, f)
			}
			if len(names) == 0 {
				return false
			}
			first = filepath.Join(dir, slices.Min(names))
		}
	}
	f, err := safetensors.Open(first)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Metadata["format"] == FormatMetadata
}

// ReadConfig parses an MLX config.json: the Hugging Face keys through
// formats/hf and the "quantization" object (nil when absent).
func ReadConfig(dir string) (*hf.Config, *Quantization, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, nil, safetensors.Corrupt(path, "config is not a JSON object")
	}
	var q *Quantization
	if qr, ok := raw["quantization"]; ok && string(qr) != "null" {
		if q, err = ParseQuantization(qr); err != nil {
			return nil, nil, safetensors.Corrupt(path, err.Error())
		}
	}
	delete(raw, "quantization")
	delete(raw, "quantization_config")
	rest, _ := json.Marshal(raw)
	c, err := hf.ParseConfig(rest)
	if err != nil {
		return nil, nil, safetensors.Corrupt(path, err.Error())
	}
	return c, q, nil
}

// Open opens an MLX directory and checks that it holds every tensor its
// config needs with the dtypes and shapes of the layout.
func Open(dir string) (*Checkpoint, error) {
	c, q, err := ReadConfig(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &safetensors.NotFoundError{Path: dir, Msg: "no config.json: not an MLX directory"}
		}
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Dir: dir, Config: c, Quant: q, Weights: set}
	if c.TieWordEmbeddings && ck.has(hf.LMHead+".weight") {
		c.TieWordEmbeddings = false
	}
	if err := ck.validate(); err != nil {
		set.Close()
		return nil, err
	}
	return ck, nil
}

// Close releases the memory maps.
func (ck *Checkpoint) Close() error { return ck.Weights.Close() }

func (ck *Checkpoint) has(name string) bool { _, ok := ck.Weights.Tensor(name); return ok }

// Tensor returns a tensor by name or an error naming it and the directory.
func (ck *Checkpoint) Tensor(name string) (*safetensors.Tensor, error) {
	t, ok := ck.Weights.Tensor(name)
	if !ok {
		return nil, safetensors.Corrupt(ck.Dir, "missing tensor "+name)
	}
	return t, nil
}

func (ck *Checkpoint) corrupt(format string, args ...any) error {
	return safetensors.Corrupt(ck.Dir, fmt.Sprintf(format, args...))
}

// Weight is a module's weight [Out, In]: Float (a float tensor) or Affine.
type Weight struct {
	Float  *safetensors.Tensor
	Affine *gemm.Affine
	Params Params // of Affine
}

// Module resolves the weight [out, in] of module (expert e of a stacked
// switch_mlp module when e ≥ 0). With read unset only dtypes and shapes are
// checked and Affine's scales and biases are left empty.
func (ck *Checkpoint) Module(module string, out, in, e int, read bool) (Weight, error) {
	lead := []int{}
	if e >= 0 {
		lead = []int{ck.Config.NumExperts}
	}
	shape := func(d ...int) []int { return append(slices.Clone(lead), d...) }
	sub := func(t *safetensors.Tensor) (*safetensors.Tensor, error) {
		if e < 0 {
			return t, nil
		}
		n := t.NumElements() / t.Shape[0]
		return t.Sub(e*n, t.Shape[1:])
	}
	w, err := ck.Tensor(module + ".weight")
	if err != nil {
		return Weight{}, err
	}
	p, quantized := ck.Quant.Lookup(module, ck.has(module+SuffixScales))
	if !quantized {
		if !w.DType.IsFloat() || !slices.Equal(w.Shape, shape(out, in)) {
			return Weight{}, ck.corrupt("tensor %s is %s %v, want a float %v", w.Name, w.DType, w.Shape, shape(out, in))
		}
		f, err := sub(w)
		return Weight{Float: f}, err
	}
	if in%p.GroupSize != 0 || in%p.PerWord() != 0 {
		return Weight{}, ck.corrupt("%s: input width %d is not a multiple of group_size %d", module, in, p.GroupSize)
	}
	if w.DType != safetensors.U32 || !slices.Equal(w.Shape, shape(out, in/p.PerWord())) {
		return Weight{}, ck.corrupt("tensor %s is %s %v, want U32 %v (%d-bit affine)", w.Name, w.DType, w.Shape, shape(out, in/p.PerWord()), p.Bits)
	}
	var sb [2]*safetensors.Tensor
	for k, suffix := range []string{SuffixScales, SuffixBiases} {
		t, err := ck.Tensor(module + suffix)
		if err != nil {
			return Weight{}, err
		}
		if !t.DType.IsFloat() || !slices.Equal(t.Shape, shape(out, in/p.GroupSize)) {
			return Weight{}, ck.corrupt("tensor %s is %s %v, want a float %v (group_size %d)", t.Name, t.DType, t.Shape, shape(out, in/p.GroupSize), p.GroupSize)
		}
		sb[k] = t
	}
	a := &gemm.Affine{Bits: p.Bits, Group: p.GroupSize, N: out, K: in}
	if !read {
		return Weight{Affine: a, Params: p}, nil
	}
	ws, err := sub(w)
	if err != nil {
		return Weight{}, err
	}
	if a.Weight, err = ws.Uint32s(); err != nil {
		return Weight{}, err
	}
	for k, dst := range []*[]float32{&a.Scales, &a.Biases} {
		t, err := sub(sb[k])
		if err != nil {
			return Weight{}, err
		}
		if *dst, err = t.Float32(); err != nil {
			return Weight{}, err
		}
	}
	if err := a.Check(); err != nil {
		return Weight{}, ck.corrupt("%s: %v", module, err)
	}
	return Weight{Affine: a, Params: p}, nil
}

// ModuleOf is the MLX module path and expert index (−1 when not stacked) of
// a linear layer named the Hugging Face way.
func (ck *Checkpoint) ModuleOf(spec hf.Linear) (string, int) {
	if spec.Kind == hf.KindExpert {
		return SwitchModule(ck.Config, spec.Layer, spec.Proj), spec.Expert
	}
	return spec.Name, -1
}

// Linear returns the weight and bias (nil when the layer has none) of a
// linear layer named the Hugging Face way.
func (ck *Checkpoint) Linear(spec hf.Linear) (Weight, *safetensors.Tensor, error) {
	module, e := ck.ModuleOf(spec)
	w, err := ck.Module(module, spec.Out, spec.In, e, true)
	if err != nil {
		return Weight{}, nil, err
	}
	if !spec.Bias {
		return w, nil, nil
	}
	b, err := ck.Tensor(spec.Name + ".bias")
	if err != nil {
		return Weight{}, nil, err
	}
	if !b.DType.IsFloat() || !slices.Equal(b.Shape, []int{spec.Out}) {
		return Weight{}, nil, ck.corrupt("tensor %s is %s %v, want a float [%d]", b.Name, b.DType, b.Shape, spec.Out)
	}
	return w, b, nil
}

// Linears lists the linear layers of the model (Hugging Face names), lm_head
// last when stored.
func (ck *Checkpoint) Linears() []hf.Linear {
	c := ck.Config
	var ls []hf.Linear
	for i := 0; i < c.NumHiddenLayers; i++ {
		ls = append(ls, c.LayerLinears(i)...)
	}
	if !c.TieWordEmbeddings {
		ls = append(ls, hf.Linear{Name: hf.LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: hf.KindLMHead, Layer: -1, Expert: -1})
	}
	return ls
}

// validate checks every tensor the config needs (dtypes and shapes) and
// that no tensor is left unaccounted for.
func (ck *Checkpoint) validate() error {
	c := ck.Config
	used := map[string]bool{}
	mark := func(module string) {
		for _, s := range []string{".weight", ".bias", SuffixScales, SuffixBiases} {
			used[module+s] = true
		}
	}
	if _, err := ck.Module(strings.TrimSuffix(hf.EmbedTokens, ".weight"), c.VocabSize, c.HiddenSize, -1, false); err != nil {
		return err
	}
	mark(strings.TrimSuffix(hf.EmbedTokens, ".weight"))
	vectors := []hf.TensorSpec{{Name: hf.FinalNorm, Shape: []int{c.HiddenSize}}}
	for i := 0; i < c.NumHiddenLayers; i++ {
		vectors = append(vectors, c.LayerNorms(i)...) // q_norm, k_norm [head_dim] included
	}
	for _, v := range vectors {
		t, err := ck.Tensor(v.Name)
		if err != nil {
			return err
		}
		if !t.DType.IsFloat() || !slices.Equal(t.Shape, v.Shape) {
			return ck.corrupt("tensor %s is %s %v, want a float %v", v.Name, t.DType, t.Shape, v.Shape)
		}
		used[v.Name] = true
	}
	for _, l := range ck.Linears() {
		module, e := ck.ModuleOf(l)
		if e > 0 {
			continue // the stacked tensors were checked with expert 0
		}
		if _, err := ck.Module(module, l.Out, l.In, e, false); err != nil {
			return err
		}
		if l.Bias {
			if _, _, err := ck.Linear(l); err != nil {
				return err
			}
		}
		mark(module)
		mark(l.Name)
	}
	for _, n := range ck.Weights.Names() {
		if !used[n] {
			return ck.corrupt("unexpected tensor %s (not part of the %s model its config describes)", n, c.ModelType)
		}
	}
	return nil
}

// Report describes the MLX directory dir in the terms of `moeforge
// inspect` (formats/hf's Report): the config, dtypes and shards, the
// quantization (defaults, overrides, how many linears are affine-quantized)
// and the stacked expert layout.
func Report(dir string) (*hf.Report, error) {
	ck, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	c := ck.Config
	r := hf.ConfigReport(dir, c)
	r.Format = FormatMetadata
	r.WeightsRead = true
	r.Tensors = ck.Weights.Len()
	for _, n := range ck.Weights.Names() {
		t, _ := ck.Weights.Tensor(n)
		d := r.DTypes[string(t.DType)]
		d.Tensors++
		d.Bytes += t.ByteSize()
		r.DTypes[string(t.DType)] = d
	}
	r.Shards = hf.ShardsReport{Count: len(ck.Weights.Files), Bytes: ck.Weights.FileBytes(), TensorBytes: ck.Weights.TotalBytes(),
		Indexed: ck.Weights.Index != nil, Files: []hf.ShardFile{}}
	for _, f := range ck.Weights.Files {
		r.Shards.Files = append(r.Shards.Files, hf.ShardFile{Name: filepath.Base(f.Path), Tensors: len(f.Tensors()), Bytes: f.Size()})
	}
	if r.Experts != nil {
		r.Experts.Layout = "stacked (switch_mlp)"
	}
	linears, quantized := 0, 0
	for _, l := range ck.Linears() {
		module, e := ck.ModuleOf(l)
		w, err := ck.Module(module, l.Out, l.In, e, false)
		if err != nil {
			return nil, err
		}
		linears++
		if w.Affine != nil {
			quantized++
		}
	}
	if q := ck.Quant; q != nil {
		r.Quantization = &hf.QuantReport{Method: "mlx " + q.Summary(), Bits: q.Bits, GroupSize: q.GroupSize,
			QuantizedLinears: quantized, Linears: linears}
	}
	return r, nil
}
