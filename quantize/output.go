package quantize

import (
	"fmt"
	"strings"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/internal/pages"
	"github.com/moeforge/moeforge/model"
)

// plan lists every output tensor in writing order: embeddings; per layer
// norms, then its linears (GPTQ tensors for quantized ones, the input's
// tensors otherwise); final norm; lm_head.
func (r *runner) plan() ([]safetensors.Info, error) {
	c := r.ck.Config
	var plan []safetensors.Info
	// Tensors copied unchanged are checked up front, so that a NaN in the
	// input is reported by its name before any work is done.
	raw := func(name string) error {
		t, err := r.ck.Tensor(name)
		if err != nil {
			return err
		}
		if err := checkFinite(t); err != nil {
			return err
		}
		plan = append(plan, safetensors.InfoOf(t))
		return nil
	}
	if err := raw(hf.EmbedTokens); err != nil {
		return nil, err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, n := range c.LayerNorms(i) { // input, post-attention (and q/k norm)
			if err := raw(n.Name); err != nil {
				return nil, err
			}
		}
		for _, l := range c.LayerLinears(i) {
			if mc, ok := r.opt.module(l); ok {
				lay, err := mc.Layout()
				if err != nil {
					return nil, fmt.Errorf("%s: %w", l.Name, err)
				}
				groups := gptq.NumGroups(l.In, mc.GroupSize)
				plan = append(plan, lay.Tensors(l.Name, l.Out, l.In, groups)...)
				if l.Bias {
					lw, err := r.ck.Linear(l)
					if err != nil {
						return nil, err
					}
					if err := checkFinite(lw.Bias); err != nil {
						return nil, err
					}
					plan = append(plan, safetensors.Info{Name: l.Name + ".bias", DType: safetensors.F16, Shape: []int{l.Out}})
				}
				continue
			}
			lw, err := r.ck.Linear(l)
			if err != nil {
				return nil, err
			}
			if err := checkFinite(lw.Weight); err != nil {
				return nil, err
			}
			plan = append(plan, safetensors.Info{Name: l.Name + ".weight", DType: lw.Weight.DType, Shape: []int{l.Out, l.In}})
			if lw.Bias != nil {
				if err := checkFinite(lw.Bias); err != nil {
					return nil, err
				}
				plan = append(plan, safetensors.Info{Name: l.Name + ".bias", DType: lw.Bias.DType, Shape: []int{l.Out}})
			}
		}
	}
	if err := raw(hf.FinalNorm); err != nil {
		return nil, err
	}
	if mc, ok := r.opt.module(lmHeadSpec(c)); ok {
		// GPTQ lm_head (a tied head is untied: the embeddings stay float).
		lay, err := mc.Layout()
		if err != nil {
			return nil, fmt.Errorf("lm_head: %w", err)
		}
		plan = append(plan, lay.Tensors(hf.LMHead, c.VocabSize, c.HiddenSize, gptq.NumGroups(c.HiddenSize, mc.GroupSize))...)
	} else if !c.TieWordEmbeddings {
		if err := raw(hf.LMHead + ".weight"); err != nil {
			return nil, err
		}
	}
	for _, n := range r.ck.Unexpected {
		r.rep.Notices = append(r.rep.Notices, fmt.Sprintf("tensor %s is not part of the %s model and is not written", n, c.ModelType))
	}
	return plan, nil
}

// writeRaw copies a float tensor of the input unchanged (plan checked that
// it holds no NaN or infinity).
func (r *runner) writeRaw(name string) error {
	t, err := r.ck.Tensor(name)
	if err != nil {
		return err
	}
	return r.writeTensor(name, t.Bytes())
}

// checkFinite scans a float tensor for NaN and infinities, a block of rows
// at a time.
func checkFinite(t *safetensors.Tensor) error {
	rows := 1
	if len(t.Shape) > 0 {
		rows = t.Shape[0]
	}
	per := max(1, t.NumElements()/max(rows, 1))
	step := max(1, (1<<20)/per)
	for r0 := 0; r0 < rows; r0 += step {
		part := t
		if len(t.Shape) > 0 {
			var err error
			if part, err = t.Rows(r0, min(r0+step, rows)); err != nil {
				return err
			}
		}
		v, err := part.Float32()
		if err != nil {
			return err
		}
		if k := nonFinite32(v); k >= 0 {
			return fmt.Errorf("tensor %s holds %v at element %d: refusing to write a model with NaN or infinities", t.Name, v[k], r0*per+k)
		}
		if len(t.Shape) == 0 {
			break
		}
	}
	return nil
}

// writeLayer writes a layer's tensors in plan order.
func (r *runner) writeLayer(l *model.Layer, q map[*model.Linear]*gptq.Layer) error {
	c := r.ck.Config
	for _, n := range c.LayerNorms(l.Index) {
		if err := r.writeRaw(n.Name); err != nil {
			return err
		}
	}
	byName := map[string]*model.Linear{}
	for _, lin := range l.Linears() {
		byName[lin.Name] = lin
	}
	for _, spec := range c.LayerLinears(l.Index) {
		lin := byName[spec.Name]
		if !r.opt.quantizes(spec) {
			lw, err := r.ck.Linear(spec)
			if err != nil {
				return err
			}
			if err := r.writeTensor(spec.Name+".weight", lw.Weight.Bytes()); err != nil {
				return err
			}
			if lw.Bias != nil {
				if err := r.writeTensor(spec.Name+".bias", lw.Bias.Bytes()); err != nil {
					return err
				}
			}
			continue
		}
		if err := r.writeQuantized(spec, lin, q[lin]); err != nil {
			return err
		}
	}
	return nil
}

// writeQuantized writes the GPTQ tensors of a quantized linear and its
// bias as float16.
func (r *runner) writeQuantized(spec hf.Linear, lin *model.Linear, ql *gptq.Layer) error {
	{
		if ql == nil {
			return fmt.Errorf("internal error: %s was not quantized", spec.Name)
		}
		r.mu.Lock()
		p := r.packed[ql]
		delete(r.packed, ql)
		r.mu.Unlock()
		if p == nil {
			var err error
			if p, err = ql.Packed(); err != nil {
				return fmt.Errorf("%s: %w", spec.Name, err)
			}
		}
		for _, t := range []struct {
			suffix string
			data   []byte
		}{{gptq.SuffixQWeight, gptq.Int32Bytes(p.QWeight)}, {gptq.SuffixQZeros, gptq.Int32Bytes(p.QZeros)}, {gptq.SuffixScales, gptq.Uint16Bytes(p.Scales)}, {gptq.SuffixGIdx, gptq.Int32Bytes(p.GIdx)}} {
			if err := r.writeTensor(spec.Name+t.suffix, t.data); err != nil {
				return err
			}
		}
		if spec.Bias {
			if k := nonFinite32(lin.Bias); k >= 0 {
				return fmt.Errorf("%s.bias holds %v at %d: refusing to write a model with NaN or infinities", spec.Name, lin.Bias[k], k)
			}
			b := make([]uint16, len(lin.Bias))
			half.NarrowF16(b, lin.Bias)
			for k, v := range b {
				if v&0x7fff >= 0x7c00 {
					return fmt.Errorf("%s.bias[%d] = %v overflows float16", spec.Name, k, lin.Bias[k])
				}
			}
			if err := r.writeTensor(spec.Name+".bias", gptq.Uint16Bytes(b)); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseLayer drops layer i's input weights from the resident set (they
// are not read again), so that the memory-mapped input does not add up to
// its whole size in peak RSS over a run.
func (r *runner) releaseLayer(i int) {
	for _, spec := range r.ck.Config.LayerLinears(i) {
		if lw, err := r.ck.Linear(spec); err == nil {
			pages.Release(lw.Weight.Bytes())
		}
	}
}

// writeConfigs writes config.json with quantization_config,
// quantize_config.json, and copies the non-weight files.
func (r *runner) writeConfigs() error {
	c := r.ck.Config.Clone()
	qc := r.opt.Config // validated by Run before any work
	if qc.LMHead {
		c.TieWordEmbeddings = false // lm_head has its own GPTQ tensors
	}
	qc.ModulesInBlock = r.modulesInBlock()
	c.Quantization = &qc
	if err := r.w.WriteConfig(c); err != nil {
		return err
	}
	data, err := qc.Marshal()
	if err != nil {
		return err
	}
	if err := r.w.WriteFile(gptq.ConfigFile, data); err != nil {
		return err
	}
	if _, err := r.w.CopyExtraFiles(r.ck.Dir); err != nil {
		return err
	}
	return nil
}

// modulesInBlock lists the quantized modules of a decoder block (names
// relative to model.layers.N.) in true-sequential groups, over all layers.
func (r *runner) modulesInBlock() [][]string {
	c := r.ck.Config
	groups := make([][]string, len(GroupNames))
	seen := map[string]bool{}
	for i := 0; i < c.NumHiddenLayers; i++ {
		prefix := hf.LayerPrefix(i)
		for _, l := range c.LayerLinears(i) {
			if !r.opt.quantizes(l) {
				continue
			}
			n := strings.TrimPrefix(l.Name, prefix)
			if !seen[n] {
				seen[n] = true
				g := groupOf(l) - 1
				groups[g] = append(groups[g], n)
			}
		}
	}
	var out [][]string
	for _, g := range groups {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}
