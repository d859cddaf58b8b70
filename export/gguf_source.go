package export

import (
	"fmt"

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

// defaultType is Q4_0 for GPTQ, else the checkpoint's float dtype.
func (s *source) defaultType() gguf.Type {
	if s.gptq != nil {
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
// exactly, unless requantizing was asked for.
func (s *source) checkTarget(opt GGUFOptions) error {
	q := s.gptq
	if q == nil || opt.Requantize {
		return nil
	}
	dir := s.ck.Dir
	switch opt.Type {
	case gguf.F32, gguf.F16, gguf.BF16:
		return nil // dequantized (exactly for F32)
	case gguf.Q8_0:
		return refuse("%s: --type q8_0 from %d-bit GPTQ is not exact (8-bit GPTQ → Q8_0 is not implemented yet); use --type q4_0, a float type, or --requantize", dir, q.Bits)
	}
	switch {
	case q.Bits != 4:
		return refuse("%s: config quantization_config.bits=%d: only 4-bit GPTQ repacks into Q4_0 (use --requantize)", dir, q.Bits)
	case !q.Sym:
		return refuse("%s: config quantization_config.sym=false: Q4_0 has no zero point, only symmetric GPTQ repacks exactly (use --requantize)", dir)
	case q.DescAct:
		return refuse("%s: config quantization_config.desc_act=true: act-order groups are not contiguous 32-blocks, no exact Q4_0 repack (use --requantize)", dir)
	case q.GroupSize != -1 && (q.GroupSize <= 0 || q.GroupSize%32 != 0):
		return refuse("%s: config quantization_config.group_size=%d: Q4_0 blocks of 32 need a group size that is a multiple of 32 (use --requantize)", dir, q.GroupSize)
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
		if typ == gguf.Q4_0 {
			err := repackQ4_0(dst, layer, perm)
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
