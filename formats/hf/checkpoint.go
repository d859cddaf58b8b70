package hf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// Checkpoint is an opened Hugging Face checkpoint directory: its config and
// its lazily read, memory-mapped tensors.
type Checkpoint struct {
	Dir     string
	Config  *Config
	Weights *safetensors.Set
	// Unexpected lists tensors the config does not account for (transformers
	// would warn about them as unexpected keys).
	Unexpected []string
}

// LinearWeights are the tensors of one linear layer: a float Weight [out, in],
// or the GPTQ tensors; Bias is nil when the layer has none.
type LinearWeights struct {
	Name    string
	Weight  *safetensors.Tensor
	Bias    *safetensors.Tensor
	QWeight *safetensors.Tensor
	QZeros  *safetensors.Tensor
	Scales  *safetensors.Tensor
	GIdx    *safetensors.Tensor
}

// GPTQ returns the layer's GPTQ tensors (nil without Quantized).
func (l *LinearWeights) GPTQ() gptq.Tensors {
	return gptq.Tensors{QWeight: l.QWeight, QZeros: l.QZeros, Scales: l.Scales, GIdx: l.GIdx}
}

// Quantized reports whether the layer is stored as GPTQ int4.
func (l *LinearWeights) Quantized() bool { return l.QWeight != nil }

// Open opens dir, parses its config and checks that the weights hold every
// tensor the config needs, with the right shapes.
func Open(dir string) (*Checkpoint, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
				return nil, &safetensors.NotFoundError{Path: dir, Msg: "no such checkpoint directory"}
			}
			return nil, &safetensors.NotFoundError{Path: dir, Msg: "no config.json: not a Hugging Face checkpoint directory"}
		}
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Dir: dir, Config: cfg, Weights: set}
	if err := reconcileQuantizeConfig(dir, cfg); err != nil {
		set.Close()
		return nil, err
	}
	if err := ck.validate(); err != nil {
		set.Close()
		return nil, err
	}
	return ck, nil
}

// Close releases the memory maps.
func (ck *Checkpoint) Close() error { return ck.Weights.Close() }

// Tensor returns a tensor by its canonical name (the per-expert layout's)
// or an error naming it and the directory. A router stored where the fused
// layout keeps it (mixtral: mlp.gate for block_sparse_moe.gate) is found
// under its canonical name.
func (ck *Checkpoint) Tensor(name string) (*safetensors.Tensor, error) {
	if t, ok := ck.Weights.Tensor(name); ok {
		return t, nil
	}
	if alias, ok := ck.alias(name); ok {
		if t, ok := ck.Weights.Tensor(alias); ok {
			return t, nil
		}
	}
	return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("missing tensor %s", name))
}

// alias returns the fused-layout name of a canonical tensor name, when the
// two differ (only mixtral's router does).
func (ck *Checkpoint) alias(name string) (string, bool) {
	c := ck.Config
	if !c.IsMoE() {
		return "", false
	}
	for _, i := range c.MoELayers() {
		canon, fused := c.RouterLinear(i), c.FusedRouterLinear(i)
		if canon == fused {
			return "", false
		}
		for _, suffix := range []string{".weight", ".qweight", ".qzeros", ".scales", ".g_idx", ".bias"} {
			if name == canon+suffix {
				return fused + suffix, true
			}
		}
	}
	return "", false
}

// Linear resolves the tensors of a linear layer by its canonical module path
// (the per-expert name for experts). Experts stored in the fused layout are
// returned as views into the fused tensors.
func (ck *Checkpoint) Linear(l Linear) (*LinearWeights, error) {
	lw := &LinearWeights{Name: l.Name}
	if t, err := ck.Tensor(l.Name + ".weight"); err == nil {
		lw.Weight = t
	} else if t, err := ck.Tensor(l.Name + gptq.SuffixQWeight); err == nil {
		lw.QWeight = t
		var err error
		for _, p := range []struct {
			suffix string
			dst    **safetensors.Tensor
		}{{gptq.SuffixQZeros, &lw.QZeros}, {gptq.SuffixScales, &lw.Scales}, {gptq.SuffixGIdx, &lw.GIdx}} {
			if *p.dst, err = ck.Tensor(l.Name + p.suffix); err != nil {
				return nil, err
			}
		}
	} else if l.Kind == KindExpert {
		w, err := ck.fusedExpert(l)
		if err != nil {
			return nil, err
		}
		lw.Weight = w
	} else {
		return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("missing tensor %s.weight", l.Name))
	}
	if l.Bias {
		b, err := ck.Tensor(l.Name + ".bias")
		if err != nil {
			return nil, err
		}
		lw.Bias = b
	}
	return lw, nil
}

// fusedExpert returns a view of expert l.Expert's projection in the fused
// layout: gate_up_proj [E, 2I, H] holds per expert its I gate rows, then its
// I up rows; down_proj is [E, H, I]. The transposed layout some exporters
// write ([E, H, 2I] and [E, I, H], input features first) is refused: read as
// if it were transformers' layout it would load and compute garbage, and
// which half is the gate there is not recorded in the file. When H = 2I (or
// H = I for down_proj) the two layouts have the same shape and the file is
// read as transformers writes it.
func (ck *Checkpoint) fusedExpert(l Linear) (*safetensors.Tensor, error) {
	c := ck.Config
	gateUp, down := c.FusedExpertTensors(l.Layer)
	name := gateUp
	if l.Proj == DownProj {
		name = down
	}
	t, ok := ck.Weights.Tensor(name)
	if !ok {
		return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("missing tensor %s.weight (and no fused %s)", l.Name, name))
	}
	E, H, I := c.NumExperts, c.HiddenSize, c.MoEIntermediateSize
	want, transposed := []int{E, 2 * I, H}, []int{E, H, 2 * I}
	if l.Proj == DownProj {
		want, transposed = []int{E, H, I}, []int{E, I, H}
	}
	if !slices.Equal(t.Shape, want) {
		if slices.Equal(t.Shape, transposed) {
			return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("tensor %s has shape %v, the transposed fused layout (input features first); moeforge reads the layout transformers 5 writes, %v (config %s=%d, hidden_size=%d, %s=%d): re-save the checkpoint with transformers or per expert",
				name, t.Shape, want, c.expertsKey(), E, H, c.expertWidthKey(), I))
		}
		return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("tensor %s has shape %v, want %v (config %s=%d, hidden_size=%d, %s=%d)", name, t.Shape, want, c.expertsKey(), E, H, c.expertWidthKey(), I))
	}
	if !t.DType.IsFloat() {
		return nil, safetensors.Corrupt(ck.Dir, fmt.Sprintf("tensor %s has dtype %s, want a float type", name, t.DType))
	}
	switch l.Proj {
	case GateProj:
		return t.Sub(l.Expert*2*I*H, []int{I, H})
	case UpProj:
		return t.Sub(l.Expert*2*I*H+I*H, []int{I, H})
	}
	return t.Sub(l.Expert*H*I, []int{H, I})
}

// linears lists every linear layer of the model: each decoder layer's, then
// lm_head unless the embeddings are tied.
func (ck *Checkpoint) linears() []Linear {
	c := ck.Config
	var ls []Linear
	for i := 0; i < c.NumHiddenLayers; i++ {
		ls = append(ls, c.LayerLinears(i)...)
	}
	if !c.TieWordEmbeddings {
		ls = append(ls, Linear{Name: LMHead, Out: c.VocabSize, In: c.HiddenSize, Kind: KindLMHead, Layer: -1, Expert: -1})
	}
	return ls
}

func (ck *Checkpoint) validate() error {
	c := ck.Config
	used := map[string]bool{}
	check := func(t *safetensors.Tensor, want []int, hint string) error {
		if !t.DType.IsFloat() {
			return safetensors.Corrupt(ck.Dir, fmt.Sprintf("tensor %s has dtype %s, want a float type", t.Name, t.DType))
		}
		if !slices.Equal(t.Shape, want) {
			return safetensors.Corrupt(ck.Dir, fmt.Sprintf("tensor %s has shape %v, want %v (%s)", t.Name, t.Shape, want, hint))
		}
		return nil
	}
	plain := func(name string, want []int, hint string) error {
		t, err := ck.Tensor(name)
		if err != nil {
			return err
		}
		used[t.Name] = true
		return check(t, want, hint)
	}
	h := c.HiddenSize
	hiddenHint := fmt.Sprintf("config hidden_size=%d", h)
	if err := plain(EmbedTokens, []int{c.VocabSize, h}, fmt.Sprintf("config vocab_size=%d, hidden_size=%d", c.VocabSize, h)); err != nil {
		return err
	}
	if err := plain(FinalNorm, []int{h}, hiddenHint); err != nil {
		return err
	}
	for i := 0; i < c.NumHiddenLayers; i++ {
		for _, n := range c.LayerNorms(i) {
			hint := hiddenHint
			if n.Name == QNorm(i) || n.Name == KNorm(i) {
				hint = fmt.Sprintf("config head_dim=%d", c.HeadDim)
			}
			if err := plain(n.Name, n.Shape, hint); err != nil {
				return err
			}
		}
	}
	for _, l := range ck.linears() {
		lw, err := ck.Linear(l)
		if err != nil {
			if l.Kind == KindLMHead {
				return fmt.Errorf("%w (tie_word_embeddings is false)", err)
			}
			return err
		}
		hint := linearHint(c, l)
		if lw.Weight != nil {
			used[lw.Weight.Name] = true
			if err := check(lw.Weight, []int{l.Out, l.In}, hint); err != nil {
				return err
			}
		} else {
			if err := checkGPTQ(ck.Dir, c, lw, l); err != nil {
				return err
			}
			for _, t := range []*safetensors.Tensor{lw.QWeight, lw.QZeros, lw.Scales, lw.GIdx} {
				used[t.Name] = true
			}
		}
		if lw.Bias != nil {
			used[lw.Bias.Name] = true
			if err := check(lw.Bias, []int{l.Out}, hint); err != nil {
				return err
			}
		}
	}
	for _, n := range ck.Weights.Names() {
		if !used[n] {
			ck.Unexpected = append(ck.Unexpected, n)
		}
	}
	return nil
}

// linearHint names the config keys that determine a linear layer's shape.
func linearHint(c *Config, l Linear) string {
	switch l.Kind {
	case KindExpert:
		return fmt.Sprintf("config hidden_size=%d, %s=%d", c.HiddenSize, c.expertWidthKey(), c.MoEIntermediateSize)
	case KindSharedExpert:
		return fmt.Sprintf("config hidden_size=%d, shared_expert_intermediate_size=%d", c.HiddenSize, c.SharedExpertIntermediateSize)
	case KindMLP:
		return fmt.Sprintf("config hidden_size=%d, intermediate_size=%d", c.HiddenSize, c.IntermediateSize)
	case KindRouter:
		return fmt.Sprintf("config %s=%d, hidden_size=%d", c.expertsKey(), c.NumExperts, c.HiddenSize)
	case KindAttention:
		return fmt.Sprintf("config hidden_size=%d, num_attention_heads=%d, num_key_value_heads=%d, head_dim=%d", c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim)
	case KindSharedExpertGate:
		return fmt.Sprintf("config hidden_size=%d", c.HiddenSize)
	}
	return fmt.Sprintf("config hidden_size=%d, vocab_size=%d", c.HiddenSize, c.VocabSize)
}

// checkGPTQ checks the shapes and dtypes of a GPTQ linear (FORMATS.md)
// against the layout its config declares.
func checkGPTQ(dir string, c *Config, lw *LinearWeights, l Linear) error {
	lay, sym := gptq.V1Int4, false
	if q := c.Quantization; q != nil {
		var err error
		if lay, err = q.LayoutFor(l.Name); err != nil {
			return safetensors.Corrupt(dir, "quantization_config."+err.Error())
		}
		m, _ := q.Module(l.Name)
		sym = m.Sym
	}
	if err := lay.CheckTensors(l.Name, l.Out, l.In, lw.GPTQ()); err != nil {
		return safetensors.Corrupt(dir, err.Error())
	}
	if sym {
		// The stored zeros tell v1 from v2 apart: refuse a mismatch.
		qz, err := lw.QZeros.Int32s() // small: the weights are not read
		if err == nil {
			err = lay.CheckSymZeros(qz, l.Out, lw.Scales.Shape[0])
		}
		if err != nil {
			return safetensors.Corrupt(dir, fmt.Sprintf("%s: %v", l.Name, err))
		}
	}
	return nil
}

// reconcileQuantizeConfig compares config.json's quantization_config with
// quantize_config.json, when both exist: the settings a reader needs (bits,
// sym, group_size, checkpoint_format) must agree; a checkpoint_format that
// only quantize_config.json states (AutoGPTQ writes it there) is taken from
// it.
func reconcileQuantizeConfig(dir string, c *Config) error {
	q := c.Quantization
	if q == nil {
		return nil
	}
	f, err := gptq.ReadConfig(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return safetensors.Corrupt(dir, err.Error())
	}
	if q.CheckpointFormat == "" {
		q.CheckpointFormat = f.CheckpointFormat
	}
	fmtOf := func(s string) string {
		if s == "" {
			return gptq.FormatV1
		}
		return s
	}
	switch {
	case fmtOf(q.CheckpointFormat) != fmtOf(f.CheckpointFormat):
		return safetensors.Corrupt(dir, fmt.Sprintf("config.json quantization_config.checkpoint_format=%q but %s says %q: a gptq_v2 file read as v1 computes wrong weights", fmtOf(q.CheckpointFormat), gptq.ConfigFile, fmtOf(f.CheckpointFormat)))
	case f.Bits != 0 && f.Bits != q.Bits:
		return safetensors.Corrupt(dir, fmt.Sprintf("config.json quantization_config.bits=%d but %s says %d", q.Bits, gptq.ConfigFile, f.Bits))
	case f.Bits != 0 && (f.Sym != q.Sym || f.GroupSize != q.GroupSize):
		return safetensors.Corrupt(dir, fmt.Sprintf("config.json quantization_config (sym %t, group_size %d) disagrees with %s (sym %t, group_size %d)", q.Sym, q.GroupSize, gptq.ConfigFile, f.Sym, f.GroupSize))
	}
	return nil
}

// IsWeightFile reports whether a file name is part of a checkpoint's weights
// or config (everything else travels unchanged to converted checkpoints).
func IsWeightFile(name string) bool {
	switch {
	case name == "config.json", name == safetensors.IndexFile, name == gptq.ConfigFile:
		return true
	case strings.HasSuffix(name, ".safetensors"), strings.HasSuffix(name, ".bin"), strings.HasSuffix(name, ".pt"),
		strings.HasSuffix(name, ".gguf"), name == "pytorch_model.bin.index.json":
		return true
	}
	return false
}

// CopyExtraFiles copies every regular non-weight file of src (tokenizer
// files, generation_config.json, chat template, README, …) into dst, and
// returns their names.
func CopyExtraFiles(src, dst string) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	var copied []string
	for _, e := range entries {
		if !e.Type().IsRegular() || IsWeightFile(e.Name()) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return nil, err
		}
		copied = append(copied, e.Name())
	}
	return copied, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
