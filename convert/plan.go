// Package convert builds fine-grained mixture-of-experts checkpoints from
// existing ones (ALGORITHMS.md §1–2): Upcycle turns a dense Qwen2 model into
// a Qwen2-MoE model by cutting each FFN into expert pieces, Split cuts the
// experts of a Mixtral or Qwen2-MoE model into finer ones.
//
// Both return a Plan: the output config, the ordered list of output tensors
// and, for each, a function that computes its bytes from the memory-mapped
// input just before it is written. Plan.Write streams the tensors into a
// checkpoint directory in order, computed a few ahead on every core, so
// peak memory is a few tensors whatever the model size. Conversions are pure functions of the input, the
// options and the seed: the same inputs give byte-identical outputs.
package convert

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/internal/pages"
)

// Plan is a conversion ready to be written: the output config and, in write
// order, every output tensor with the function that computes it. The input
// checkpoint must stay open until the plan is written; a plan is written by
// one WriteTo at a time (which computes its tensors on Workers goroutines).
type Plan struct {
	// Config is the output config.json.
	Config *hf.Config
	// Tensors lists the output tensors in the order they are written (the
	// order of Config.Tensors(): embeddings, layers, final norm, lm_head).
	Tensors []safetensors.Info
	// Summary describes what the conversion builds.
	Summary *Summary
	// Workers is the number of goroutines computing output tensors while
	// they are written in order (0: GOMAXPROCS; 1: one at a time, when
	// written). The output does not depend on it.
	Workers int

	src     *hf.Checkpoint
	budget  int64 // bytes computed ahead of the writer (0: minBudget); tests shrink it
	produce []func() ([]byte, error)
	// release[i] lists the input tensors last read by output i: their
	// mapped pages are released once it is written.
	release [][]*safetensors.Tensor
}

// Params counts parameters: all of them and those used per token.
type Params struct {
	Total  int64 `json:"total"`
	Active int64 `json:"active"`
}

func paramsOf(c *hf.Config) Params {
	t, a := c.ParamCounts()
	return Params{Total: t, Active: a}
}

// WriteOptions tunes Plan.Write.
type WriteOptions struct {
	// MaxShardSize caps the tensor bytes per shard (0 = 5 GB, as transformers).
	MaxShardSize int64
	// Progress, when set, is told after each tensor how many are written.
	Progress func(done, total int)
}

// WriteResult lists what Plan.Write wrote.
type WriteResult struct {
	// Shards are the safetensors files, in order.
	Shards []string `json:"shards"`
	// Copied are the non-weight files carried over from the input
	// (tokenizer, generation config, chat template, …).
	Copied []string `json:"copied_files"`
	// TensorBytes is the size of all tensor data.
	TensorBytes int64 `json:"tensor_bytes"`
}

// Write writes the checkpoint into dir, which must exist and should be
// empty (WriteTo with hf.Create is the atomic form).
func (p *Plan) Write(ctx context.Context, dir string, opt WriteOptions) (*WriteResult, error) {
	w := hf.NewWriter(dir, hf.WriterOptions{MaxShardSize: opt.MaxShardSize})
	res, err := p.WriteTo(ctx, w, opt.Progress)
	if err != nil {
		w.Abort()
	}
	return res, err
}

// WriteTo writes the checkpoint through w (the shard size is w's):
// the tensors streamed shard by shard, each computed just before it is
// written, the index when sharded, config.json, and the input's non-weight
// files. The caller commits or aborts w.
func (p *Plan) WriteTo(ctx context.Context, w *hf.Writer, progress func(done, total int)) (*WriteResult, error) {
	tensors := make([]hf.Tensor, len(p.Tensors))
	res := &WriteResult{}
	n := p.Workers
	if n <= 0 {
		n = workers()
	}
	sizes := make([]int64, len(p.Tensors))
	for i, info := range p.Tensors {
		sizes[i] = info.ByteSize()
	}
	ahead := startProduceAhead(p.produce, sizes, n, p.budget)
	defer ahead.close()
	for i, info := range p.Tensors {
		rel := p.release[i]
		tensors[i] = hf.Tensor{Info: info, Produce: func() ([]byte, error) { return ahead.get(i) }, Written: func() {
			ahead.written(i)
			for _, t := range rel {
				pages.Release(t.Bytes())
			}
			res.TensorBytes += info.ByteSize()
		}}
	}
	var err error
	if res.Shards, err = w.WriteAll(ctx, tensors, progress); err != nil {
		return nil, err
	}
	if err := w.WriteConfig(p.Config); err != nil {
		return nil, err
	}
	if res.Copied, err = w.CopyExtraFiles(p.src.Dir); err != nil {
		return nil, err
	}
	return res, nil
}

// source is how one output tensor is obtained: the input tensor of the same
// name (raw), or a computation in float32 (f32) that reads the input
// tensors listed in reads.
type source struct {
	dtype safetensors.DType
	shape []int
	raw   *safetensors.Tensor
	f32   func() ([]float32, error)
	reads []*safetensors.Tensor
}

// builder assembles a Plan: computed tensors are registered by name, every
// other tensor the output config needs is taken from the input unchanged.
type builder struct {
	in       *hf.Checkpoint
	out      *hf.Config
	dtype    safetensors.DType // forced output dtype, "" = keep each source's
	computed map[string]*source
}

func newBuilder(in *hf.Checkpoint, out *hf.Config, dtype safetensors.DType) *builder {
	return &builder{in: in, out: out, dtype: dtype, computed: map[string]*source{}}
}

// outDType is the dtype of an output tensor derived from an input tensor of
// dtype d: the forced dtype, else d itself when moeforge can write it
// (F32, BF16, F16), else F32.
func (b *builder) outDType(d safetensors.DType) safetensors.DType {
	if b.dtype != "" {
		return b.dtype
	}
	switch d {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
		return d
	}
	return safetensors.F32
}

// compute registers an output tensor computed in float32 from the input
// tensors reads; like is the input tensor whose dtype the output keeps.
func (b *builder) compute(name string, like *safetensors.Tensor, shape []int, f func() ([]float32, error), reads ...*safetensors.Tensor) {
	b.computed[name] = &source{dtype: b.outDType(like.DType), shape: shape, f32: f, reads: reads}
}

// plan lists the output config's tensors in order, each computed or copied
// from the input tensor of the same name.
func (b *builder) plan(summary *Summary) (*Plan, error) {
	p := &Plan{Config: b.out, Summary: summary, src: b.in}
	used := 0
	for _, spec := range b.out.Tensors() {
		s, ok := b.computed[spec.Name]
		if ok {
			used++
		} else {
			t, err := b.in.Tensor(spec.Name)
			if err != nil {
				return nil, err
			}
			if !slices.Equal(t.Shape, spec.Shape) {
				return nil, fmt.Errorf("%s: tensor %s has shape %v, want %v", b.in.Dir, spec.Name, t.Shape, spec.Shape)
			}
			s = &source{dtype: b.outDType(t.DType), shape: t.Shape, raw: t, reads: []*safetensors.Tensor{t}}
		}
		if !slices.Equal(s.shape, spec.Shape) {
			return nil, fmt.Errorf("internal error: tensor %s planned with shape %v, config wants %v", spec.Name, s.shape, spec.Shape)
		}
		name := spec.Name
		p.Tensors = append(p.Tensors, safetensors.Info{Name: name, DType: s.dtype, Shape: spec.Shape})
		p.produce = append(p.produce, func() ([]byte, error) { return s.bytes(name) })
		p.release = append(p.release, s.reads)
	}
	// Keep in release[i] only the tensors that no later output reads.
	last := map[*safetensors.Tensor]int{}
	for i, reads := range p.release {
		for _, t := range reads {
			last[t] = i
		}
	}
	for i, reads := range p.release {
		var done []*safetensors.Tensor
		for _, t := range reads {
			if last[t] == i && !slices.Contains(done, t) {
				done = append(done, t)
			}
		}
		p.release[i] = done
	}
	if used != len(b.computed) {
		return nil, fmt.Errorf("internal error: %d computed tensors are not part of the output config", len(b.computed)-used)
	}
	return p, nil
}

// bytes produces the tensor's data in its output dtype.
func (s *source) bytes(name string) ([]byte, error) {
	if s.raw != nil && s.raw.DType == s.dtype {
		return s.raw.Bytes(), nil // zero copy: straight from the input's memory map
	}
	var v []float32
	var err error
	if s.raw != nil {
		v, err = s.raw.Float32()
	} else {
		v, err = s.f32()
	}
	if err != nil {
		return nil, err
	}
	return encode(name, s.dtype, v)
}

// encode converts float32 values to little-endian bytes of dtype, rounding
// to nearest even for 16-bit types. A finite value that overflows the
// target type is an error naming the tensor.
func encode(name string, dtype safetensors.DType, v []float32) ([]byte, error) {
	switch dtype {
	case safetensors.F32:
		out := make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
		}
		return out, nil
	case safetensors.BF16, safetensors.F16:
		narrow, widen := half.F32ToBF16, half.BF16ToF32
		if dtype == safetensors.F16 {
			narrow, widen = half.F32ToF16, half.F16ToF32
		}
		out := make([]byte, 2*len(v))
		for i, f := range v {
			h := narrow(f)
			if w := widen(h); math.IsInf(float64(w), 0) && !math.IsInf(float64(f), 0) {
				return nil, fmt.Errorf("tensor %s: value %g at element %d overflows %s (write --dtype f32)", name, f, i, dtype)
			}
			binary.LittleEndian.PutUint16(out[2*i:], h)
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %s: cannot write dtype %s (want F32, BF16 or F16)", name, dtype)
}

// ParseDType maps a --dtype value (f32, bf16, f16 and their long names) to
// a safetensors dtype; "" means keep the input's.
func ParseDType(s string) (safetensors.DType, error) {
	switch s {
	case "":
		return "", nil
	case "f32", "F32", "float32", "fp32":
		return safetensors.F32, nil
	case "bf16", "BF16", "bfloat16":
		return safetensors.BF16, nil
	case "f16", "F16", "float16", "fp16", "half":
		return safetensors.F16, nil
	}
	return "", fmt.Errorf("unknown dtype %q (want f32, bf16 or f16)", s)
}

// configDType is the config.json spelling of a dtype.
func configDType(d safetensors.DType) string {
	switch d {
	case safetensors.BF16:
		return "bfloat16"
	case safetensors.F16:
		return "float16"
	}
	return "float32"
}

// is16 reports whether d is a 16-bit float type.
func is16(d safetensors.DType) bool { return d == safetensors.BF16 || d == safetensors.F16 }

// isPow2 reports whether f is an exact power of two (scaling by it is exact
// in any binary float format, barring overflow).
func isPow2(f float64) bool {
	frac, _ := math.Frexp(f)
	return f > 0 && frac == 0.5
}

// checkScale refuses an exact recipe's scale factor that a 16-bit output
// would round: only powers of two are exact there.
func checkScale(factor float64, dtype safetensors.DType, what, fix string) error {
	if !is16(dtype) || isPow2(factor) {
		return nil
	}
	return fmt.Errorf("%s multiplies down_proj by %g, which is not exact in %s (only powers of two are): %s",
		what, factor, configDType(dtype), fix)
}

// matrix reads rows and elements of a 2-D input tensor lazily, from its
// memory map.
type matrix struct {
	t          *safetensors.Tensor
	rows, cols int
	f32        []float32
	u16        []uint16
	bf16       bool
}

func newMatrix(t *safetensors.Tensor) (*matrix, error) {
	if len(t.Shape) != 2 {
		return nil, fmt.Errorf("tensor %s: shape %v is not a matrix", t.Name, t.Shape)
	}
	m := &matrix{t: t, rows: t.Shape[0], cols: t.Shape[1]}
	if v, ok := t.F32View(); ok {
		m.f32 = v
	} else if v, ok := t.U16View(); ok {
		m.u16, m.bf16 = v, t.DType == safetensors.BF16
	} else {
		// Unaligned or another float type: widen once (one tensor in memory).
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		m.f32 = v
	}
	return m, nil
}

func (m *matrix) at(r, c int) float32 {
	i := r*m.cols + c
	switch {
	case m.f32 != nil:
		return m.f32[i]
	case m.bf16:
		return half.BF16ToF32(m.u16[i])
	}
	return half.F16ToF32(m.u16[i])
}

// row widens row r into dst (len cols).
func (m *matrix) row(r int, dst []float32) {
	s := r * m.cols
	switch {
	case m.f32 != nil:
		copy(dst, m.f32[s:s+m.cols])
	case m.bf16:
		half.WidenBF16(dst, m.u16[s:s+m.cols])
	default:
		half.WidenF16(dst, m.u16[s:s+m.cols])
	}
}

// gatherRows returns rows src[i] of m, scaled ([len(src), cols]); a
// negative source is a zero row (a padding neuron).
func (m *matrix) gatherRows(src []int32, scale float32) []float32 {
	out := make([]float32, len(src)*m.cols)
	for i, s := range src {
		if s < 0 || scale == 0 {
			continue
		}
		d := out[i*m.cols : (i+1)*m.cols]
		m.row(int(s), d)
		if scale != 1 {
			for j := range d {
				d[j] *= scale
			}
		}
	}
	return out
}

// gatherCols returns columns src[i] of m, scaled ([rows, len(src)]); a
// negative source is a zero column.
func (m *matrix) gatherCols(src []int32, scale float32) []float32 {
	n := len(src)
	out := make([]float32, m.rows*n)
	if scale == 0 {
		return out
	}
	for r := 0; r < m.rows; r++ {
		d := out[r*n : (r+1)*n]
		for i, s := range src {
			if s >= 0 {
				d[i] = m.at(r, int(s)) * scale
			}
		}
	}
	return out
}

// std is the standard deviation of all elements (float64 accumulation).
func (m *matrix) std() float64 {
	row := make([]float32, m.cols)
	var sum, sq float64
	for r := 0; r < m.rows; r++ {
		m.row(r, row)
		for _, v := range row {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
	}
	n := float64(m.rows * m.cols)
	if n == 0 {
		return 0
	}
	mean := sum / n
	return math.Sqrt(math.Max(sq/n-mean*mean, 0))
}
