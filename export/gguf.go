package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/outdir"
)

// GGUF export (llama.cpp, ollama): PlanGGUF checks a checkpoint
// against what llama.cpp's graph computes and lists every tensor it will
// write; (*GGUFPlan).Write streams the file one tensor at a time. The
// inverse mapping (gguf_read.go) registers a model.Source so the forward
// pass, eval and verify run on GGUF files too.
//
// Mapping (FORMATS.md, GGUF section): qwen2 → architecture "qwen2",
// qwen2_moe → "qwen2moe", qwen3 → "qwen3", qwen3_moe → "qwen3moe", mixtral →
// "llama" (q/k rows permuted for its NORM rope). Which tensors get the requested type: the attention, dense MLP,
// shared-expert and routed-expert matrices. token_embd and output keep the
// checkpoint's float dtype when the type is Q8_0 or Q4_0 (else they get the
// type itself); norms, biases, the
// router and the shared-expert gate stay F32. A matrix whose rows are not
// whole 32-element blocks falls back to F16 (listed in the summary).
//
// From a GPTQ checkpoint (symmetric, group size a multiple of 32 or -1,
// g_idx in order), Q4_0 (4-bit) and Q8_0 (8-bit) are repacks, bit for bit:
// each 32-element block takes its group's f16 scale as d and GPTQ's codes
// as its values.

// GGUFOptions controls a GGUF export.
type GGUFOptions struct {
	// Type of the large matrices: gguf.F32, F16, BF16, Q8_0 or Q4_0. Zero
	// value with TypeSet false: Q4_0 for a GPTQ checkpoint, else the
	// checkpoint's float dtype.
	Type    gguf.Type
	TypeSet bool
	// Requantize lets a GPTQ checkpoint that cannot be repacked exactly (or a
	// Q8_0 export of one) be dequantized and quantized again with llama.cpp's
	// round-to-nearest.
	Requantize bool
	// Name is general.name; empty: the input directory's base name.
	Name string
	// Force replaces an existing output file (GGUF only; PlanGGUF ignores it).
	Force bool
	// Progress, when set, is told after each tensor how many are written
	// (GGUF only).
	Progress func(done, total int)
}

// GGUFSummary describes a planned or written export.
type GGUFSummary struct {
	// Out is the file written (set by GGUF).
	Out          string         `json:"out,omitempty"`
	Architecture string         `json:"architecture"`
	Type         string         `json:"type"`
	FileType     uint32         `json:"file_type"`
	Tensors      int            `json:"tensors"`
	Metadata     int            `json:"metadata"`
	Bytes        int64          `json:"bytes"`
	TensorTypes  map[string]int `json:"tensor_types"`
	// Repacked counts GPTQ matrices written as Q4_0 bit for bit; Requantized
	// those dequantized and quantized again; Dequantized those written as
	// float.
	Repacked    int      `json:"gptq_repacked"`
	Requantized int      `json:"gptq_requantized"`
	Dequantized int      `json:"gptq_dequantized"`
	Fallback    []string `json:"f16_fallback,omitempty"`
}

// outTensor is one tensor of the output: its name, type, ne dims and how its
// bytes are produced.
type outTensor struct {
	name   string
	typ    gguf.Type
	ne     []int
	encode func(dst []byte) error
}

// GGUFPlan is a checked export, ready to write.
type GGUFPlan struct {
	ck      *hf.Checkpoint
	opt     GGUFOptions
	arch    string
	kvs     []gguf.KV
	tensors []outTensor
	summary GGUFSummary
}

// ErrUnsupported marks refusals: the checkpoint is valid but llama.cpp
// would compute something else from it, or the export cannot be exact.
var ErrUnsupported = errors.New("not exportable to GGUF")

// refusal is an ErrUnsupported error naming the config key or tensor.
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrUnsupported }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// ggufArch is what differs per architecture: the GGUF architecture name,
// its refusals, its hyperparameter keys and its tensors.
type ggufArch struct {
	name   string
	check  func(c *hf.Config) error
	keys   func(c *hf.Config, kv func(string, any))
	layers func(b *builder, i int) error
}

var ggufArchs = map[hf.Arch]*ggufArch{}

// PlanGGUF checks ck for a GGUF export and lists everything that will be
// written. Refusals match ErrUnsupported and name the config key or tensor.
func PlanGGUF(ck *hf.Checkpoint, opt GGUFOptions) (*GGUFPlan, error) {
	c := ck.Config
	if err := CheckGGUF(c); err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Dir, err)
	}
	a := ggufArchs[c.ModelType]
	src, err := newSource(ck)
	if err != nil {
		return nil, err
	}
	if !opt.TypeSet {
		opt.Type = src.defaultType()
	}
	fileType, ok := gguf.FileTypeOf(opt.Type)
	if !ok {
		return nil, refuse("--type %s: supported are f32, f16, bf16, q8_0, q4_0", strings.ToLower(opt.Type.String()))
	}
	if err := src.checkTarget(opt); err != nil {
		return nil, err
	}
	p := &GGUFPlan{ck: ck, opt: opt, arch: a.name}
	p.summary = GGUFSummary{Architecture: a.name, Type: opt.Type.String(), FileType: fileType, TensorTypes: map[string]int{}}
	b := &builder{p: p, src: src, c: c, typ: opt.Type}

	name := opt.Name
	if name == "" {
		name = baseName(ck.Dir)
	}
	kv := func(k string, v any) { p.kvs = append(p.kvs, gguf.KV{Key: k, Value: v}) }
	kv("general.architecture", a.name)
	kv("general.type", "model")
	kv("general.name", name)
	kv("general.file_type", fileType)
	kv("general.quantization_version", uint32(2))
	a.keys(c, func(k string, v any) { kv(a.name+"."+k, v) })
	tk, err := tokenizerKVs(ck.Dir, c)
	if err != nil {
		return nil, err
	}
	p.kvs = append(p.kvs, tk...)

	b.embedding()
	for i := 0; i < c.NumHiddenLayers; i++ {
		if err := a.layers(b, i); err != nil {
			return nil, err
		}
	}
	b.head()
	if b.err != nil {
		return nil, b.err
	}

	w := gguf.NewWriter(io.Discard)
	for _, e := range p.kvs {
		if err := w.AddKV(e.Key, e.Value); err != nil {
			return nil, err
		}
	}
	for _, t := range p.tensors {
		if err := w.AddTensor(t.name, t.typ, t.ne); err != nil {
			return nil, err
		}
		p.summary.TensorTypes[t.typ.String()]++
	}
	p.summary.Tensors = len(p.tensors)
	p.summary.Metadata = len(p.kvs)
	p.summary.Bytes = w.Size()
	return p, nil
}

// Size returns the size of the file Write will produce.
func (p *GGUFPlan) Size() int64 { return p.summary.Bytes }

// Summary returns what the plan writes (counts of GPTQ repacks are final
// after Write).
func (p *GGUFPlan) Summary() GGUFSummary { return p.summary }

// Write streams the GGUF file to out, computing one tensor at a time;
// progress, when set, is called after each tensor.
func (p *GGUFPlan) Write(out io.Writer, progress func(done, total int, tensor string)) (GGUFSummary, error) {
	return p.write(context.Background(), out, progress)
}

// write is Write, stopping between tensors when ctx is done.
func (p *GGUFPlan) write(ctx context.Context, out io.Writer, progress func(done, total int, tensor string)) (GGUFSummary, error) {
	w := gguf.NewWriter(out)
	for _, e := range p.kvs {
		if err := w.AddKV(e.Key, e.Value); err != nil {
			return p.summary, err
		}
	}
	for _, t := range p.tensors {
		if err := w.AddTensor(t.name, t.typ, t.ne); err != nil {
			return p.summary, err
		}
	}
	if err := w.WriteHeader(); err != nil {
		return p.summary, err
	}
	var buf []byte
	for i, t := range p.tensors {
		if err := ctx.Err(); err != nil {
			return p.summary, err
		}
		n, err := gguf.EncodedSize(t.typ, numElements(t.ne))
		if err != nil {
			return p.summary, err
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		clear(buf)
		if err := t.encode(buf); err != nil {
			return p.summary, err
		}
		if err := w.WriteTensor(buf); err != nil {
			return p.summary, err
		}
		if progress != nil {
			progress(i+1, len(p.tensors), t.name)
		}
	}
	return p.summary, w.Close()
}

// GGUF writes the Hugging Face checkpoint in (float or GPTQ) as the GGUF
// file out: CheckGGUF on config.json before the weights are opened, then
// PlanGGUF and Write. The file is written to a temporary sibling, after a
// check that its directory has room, and renamed when complete; on error
// nothing is left behind. Refusals match ErrUnsupported.
func GGUF(ctx context.Context, in, out string, opt GGUFOptions) (*GGUFSummary, error) {
	// Refuse from config.json alone before the weights are validated.
	if c, err := hf.ReadConfig(in); err == nil {
		if err := CheckGGUF(c); err != nil {
			return nil, fmt.Errorf("%s: %w", in, err)
		}
	}
	ck, err := hf.Open(in)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	plan, err := PlanGGUF(ck, opt)
	if err != nil {
		return nil, err
	}
	f, err := outdir.CreateFile(out, opt.Force)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	if err := outdir.CheckFree(filepath.Dir(f.Final()), plan.Size()); err != nil {
		return nil, err
	}
	var progress func(done, total int, tensor string)
	if opt.Progress != nil {
		progress = func(done, total int, _ string) { opt.Progress(done, total) }
	}
	sum, err := plan.write(ctx, f, progress)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", out, err)
	}
	if err := f.Commit(); err != nil {
		return nil, err
	}
	sum.Out = f.Final()
	return &sum, nil
}

func numElements(ne []int) int {
	n := 1
	for _, d := range ne {
		n *= d
	}
	return n
}

func baseName(dir string) string {
	dir = strings.TrimRight(dir, "/")
	if i := strings.LastIndexByte(dir, '/'); i >= 0 {
		return dir[i+1:]
	}
	return dir
}

// CheckGGUF refuses, from the config alone, what llama.cpp's graph for the
// architecture would compute differently from transformers. The error
// matches ErrUnsupported and names the config key.
func CheckGGUF(c *hf.Config) error {
	a, ok := ggufArchs[c.ModelType]
	if !ok {
		return refuse("model_type %q has no GGUF mapping (supported: qwen2, qwen2_moe, qwen3, qwen3_moe, mixtral)", c.ModelType)
	}
	if c.HiddenAct != "silu" {
		return refuse("config hidden_act=%q: llama.cpp's %s graph uses silu", c.HiddenAct, a.name)
	}
	if c.SlidingWindow > 0 {
		return refuse("config sliding_window=%d (use_sliding_window): sliding-window attention is not exported to GGUF", c.SlidingWindow)
	}
	return a.check(c)
}
