package export

import (
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
)

// source reads the checkpoint's tensors as float32 or, for GPTQ linears, as
// unpacked GPTQ layers.
type source struct {
	ck   *hf.Checkpoint
	gptq *gptq.Config // nil for a float checkpoint
}

func newSource(ck *hf.Checkpoint) (*source, error) {
	s := &source{ck: ck}
	if q := ck.Config.Quantization; q != nil {
		if q.QuantMethod != "gptq" {
			return nil, refuse("%s: config quantization_config.quant_method=%q: only GPTQ checkpoints are exported", ck.Dir, q.QuantMethod)
		}
		s.gptq = q
	}
	return s, nil
}

// defaultType is the exact repack of a GPTQ checkpoint (Q8_0 for 8 bits,
// else Q4_0), else the checkpoint's float dtype.
func (s *source) defaultType() gguf.Type {
	if s.gptq != nil {
		if s.gptq.Bits == 8 {
			return gguf.Q8_0
		}
		return gguf.Q4_0
	}
	return s.floatType()
}

// floatType is the checkpoint's float dtype (config dtype/torch_dtype; F32
// when absent or another).
func (s *source) floatType() gguf.Type {
	switch s.ck.Config.DType {
	case "bfloat16":
		return gguf.BF16
	case "float16":
		return gguf.F16
	}
	return gguf.F32
}

// checkTarget refuses GPTQ settings that cannot become the target type
// exactly, unless requantizing was asked for: Q4_0 takes 4-bit and Q8_0
// 8-bit symmetric modules whose groups are whole 32-blocks in order. Each
// quantized module is checked with its own settings (after dynamic rules).
func (s *source) checkTarget(opt GGUFOptions) error {
	q := s.gptq
	if q == nil || opt.Requantize {
		return nil
	}
	var bits int
	switch opt.Type {
	case gguf.Q4_0:
		bits = 4
	case gguf.Q8_0:
		bits = 8
	default:
		return nil // F32/F16/BF16: dequantized (exactly for F32)
	}
	c := s.ck.Config
	var ls []hf.Linear
	for i := 0; i < c.NumHiddenLayers; i++ {
		ls = append(ls, c.LayerLinears(i)...)
	}
	ls = append(ls, hf.Linear{Name: hf.LMHead})
	for _, l := range ls {
		if _, ok := s.ck.Weights.Tensor(l.Name + gptq.SuffixQWeight); !ok {
			continue // float (or a fused expert view, which is float)
		}
		m, _ := q.Module(l.Name)
		where := "config quantization_config"
		if len(q.Dynamic) > 0 {
			where += " (" + l.Name + " after dynamic)"
		}
		hint := "use --requantize, or a float --type"
		switch {
		case m.Bits != bits:
			if m.Bits == 4 || m.Bits == 8 {
				hint = fmt.Sprintf("use --type %s, --requantize, or a float --type", map[int]string{4: "q4_0", 8: "q8_0"}[m.Bits])
			}
			return refuse("%s: %s.bits=%d: --type %s repacks only %d-bit GPTQ exactly (%s)", s.ck.Dir, where, m.Bits, strings.ToLower(opt.Type.String()), bits, hint)
		case !m.Sym:
			return refuse("%s: %s.sym=false: %s has no zero point, only symmetric GPTQ repacks exactly (%s)", s.ck.Dir, where, opt.Type, hint)
		case m.DescAct:
			return refuse("%s: %s.desc_act=true: act-order groups are not contiguous 32-blocks, no exact repack (%s)", s.ck.Dir, where, hint)
		case m.GroupSize != -1 && (m.GroupSize <= 0 || m.GroupSize%32 != 0):
			return refuse("%s: %s.group_size=%d: %s blocks of 32 need a group size that is a multiple of 32 (%s)", s.ck.Dir, where, m.GroupSize, opt.Type, hint)
		}
	}
	return nil
}

// float reads a float tensor of the checkpoint, checking its size.
func (s *source) float(name string, n int) ([]float32, error) {
	t, err := s.ck.Tensor(name)
	if err != nil {
		return nil, err
	}
	x, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %v", s.ck.Dir, name, err)
	}
	if len(x) != n {
		return nil, fmt.Errorf("%s: tensor %s has %d elements, want %d", s.ck.Dir, name, len(x), n)
	}
	return x, nil
}

// encodeLinear writes linear l [Out, In] as typ into dst, rows permuted by
// perm (nil: in order). A GPTQ layer becomes Q4_0 by repacking when exact,
// else it is dequantized first (refused unless requantizing for Q4_0/Q8_0,
// see checkTarget).
func (s *source) encodeLinear(dst []byte, l hf.Linear, typ gguf.Type, perm func(int) int, p *GGUFPlan) error {
	lw, err := s.ck.Linear(l)
	if err != nil {
		return err
	}
	if lw.Quantized() {
		layer, err := gptqLayer(s.ck.Dir, s.gptq, lw, l.Out, l.In)
		if err != nil {
			return err
		}
		if typ == gguf.Q4_0 || typ == gguf.Q8_0 {
			var err error
			if typ == gguf.Q4_0 {
				err = repackQ4_0(dst, layer, perm)
			} else {
				err = repackQ8_0(dst, layer, perm)
			}
			if err == nil {
				p.summary.Repacked++
				return nil
			}
			if !p.opt.Requantize {
				return fmt.Errorf("%s: %s: %v (use --requantize)", s.ck.Dir, l.Name, err)
			}
		}
		if typ == gguf.Q4_0 || typ == gguf.Q8_0 {
			p.summary.Requantized++
		} else {
			p.summary.Dequantized++
		}
		return encode(typ, dst, permuteRows(layer.Dequantize(), l.Out, l.In, perm), l.Name)
	}
	x, err := lw.Weight.Float32()
	if err != nil {
		return fmt.Errorf("%s: tensor %s.weight: %v", s.ck.Dir, l.Name, err)
	}
	if len(x) != l.Out*l.In {
		return fmt.Errorf("%s: tensor %s.weight has %d elements, want [%d %d]", s.ck.Dir, l.Name, len(x), l.Out, l.In)
	}
	return encode(typ, dst, permuteRows(x, l.Out, l.In, perm), l.Name+".weight")
}

// gateRow reads a small float linear (the shared-expert gate) as float32.
func (s *source) gateRow(l hf.Linear) ([]float32, error) {
	lw, err := s.ck.Linear(l)
	if err != nil {
		return nil, err
	}
	if lw.Quantized() {
		return nil, fmt.Errorf("%s: %s is GPTQ-quantized; the shared-expert gate must be float", s.ck.Dir, l.Name)
	}
	x, err := lw.Weight.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s.weight: %v", s.ck.Dir, l.Name, err)
	}
	return x, nil
}
