package export

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/tokenizer"
)

// Reading GGUF back: the inverse of the export mapping, so that the forward
// pass (logits, eval ppl, verify --candidate) runs on a GGUF file. The file's
// metadata becomes a config.json-equivalent hf.Config and every Hugging Face
// tensor name maps to a view of the GGUF tensor: F32/F16/BF16 matrices are
// zero-copy, Q8_0/Q4_0 are dequantized inside the products
// (gguf.BlockMatrix), Mixtral's q/k rows are un-permuted on the fly.

func init() { model.RegisterFormat("gguf", openGGUFSource) }

// IsGGUF reports whether path is a regular file starting with the GGUF
// magic.
func IsGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return false
	}
	var magic [4]byte
	n, _ := f.Read(magic[:])
	return n == 4 && string(magic[:]) == gguf.Magic
}

func openGGUFSource(path string) (model.Source, bool, error) {
	if !IsGGUF(path) {
		return nil, false, nil
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, true, err
	}
	c, err := ConfigFromGGUF(f)
	if err != nil {
		f.Close()
		return nil, true, err
	}
	return &ggufSource{f: f, c: c}, true, nil
}

// ConfigFromGGUF returns the Hugging Face config a GGUF file written by
// export (or by llama.cpp's converter for these architectures) describes.
func ConfigFromGGUF(f *gguf.File) (*hf.Config, error) {
	arch, _ := f.String("general.architecture")
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s", f.Path, fmt.Sprintf(format, args...))
	}
	switch arch {
	case "qwen2", "qwen2moe", "llama", "qwen3", "qwen3moe":
	default:
		return nil, fail("general.architecture %q is not read (supported: qwen2, qwen2moe, qwen3, qwen3moe, llama with experts)", arch)
	}
	u := func(key string) (int, error) {
		v, ok := f.Uint(arch + "." + key)
		if !ok {
			return 0, fail("metadata %s.%s missing or not an unsigned integer", arch, key)
		}
		return int(v), nil
	}
	fl := func(key string, def float64) (json.Number, error) {
		v, ok := f.Get(arch + "." + key)
		if !ok {
			return json.Number(strconv.FormatFloat(def, 'g', -1, 64)), nil
		}
		x, isF32 := v.(float32)
		if !isF32 {
			return "", fail("metadata %s.%s is %T, want f32", arch, key, v)
		}
		// The shortest decimal of the float32, so 1e-6 stays 1e-6.
		return json.Number(strconv.FormatFloat(float64(x), 'g', -1, 32)), nil
	}
	cfg := map[string]any{"hidden_act": "silu", "tie_word_embeddings": false, "dtype": "float32"}
	for _, k := range []struct{ gguf, hf string }{
		{"block_count", "num_hidden_layers"}, {"context_length", "max_position_embeddings"},
		{"embedding_length", "hidden_size"}, {"feed_forward_length", "intermediate_size"},
		{"attention.head_count", "num_attention_heads"}, {"attention.head_count_kv", "num_key_value_heads"},
	} {
		v, err := u(k.gguf)
		if err != nil {
			return nil, err
		}
		cfg[k.hf] = v
	}
	var err error
	if cfg["rope_theta"], err = fl("rope.freq_base", 10000); err != nil {
		return nil, err
	}
	if cfg["rms_norm_eps"], err = fl("attention.layer_norm_rms_epsilon", 1e-6); err != nil {
		return nil, err
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return nil, fail("no 2-D tensor token_embd.weight")
	}
	cfg["vocab_size"] = emb.Dims[1]
	for _, k := range []struct{ gguf, hf string }{{"bos_token_id", "bos_token_id"}, {"eos_token_id", "eos_token_id"}} {
		if v, ok := f.Uint("tokenizer.ggml." + k.gguf); ok {
			cfg[k.hf] = v
		}
	}
	_, qkvBias := f.Tensor("blk.0.attn_q.bias")
	switch arch {
	case "qwen2":
		cfg["model_type"], cfg["architectures"] = "qwen2", []string{"Qwen2ForCausalLM"}
	case "qwen2moe":
		cfg["model_type"], cfg["architectures"] = "qwen2_moe", []string{"Qwen2MoeForCausalLM"}
		for _, k := range []struct{ gguf, hf string }{
			{"expert_count", "num_experts"}, {"expert_used_count", "num_experts_per_tok"},
			{"expert_feed_forward_length", "moe_intermediate_size"}, {"expert_shared_feed_forward_length", "shared_expert_intermediate_size"},
		} {
			v, err := u(k.gguf)
			if err != nil {
				return nil, err
			}
			cfg[k.hf] = v
		}
		cfg["norm_topk_prob"], cfg["decoder_sparse_step"], cfg["mlp_only_layers"], cfg["qkv_bias"] = false, 1, []int{}, qkvBias
	case "llama":
		n, ok := f.Uint("llama.expert_count")
		if !ok || n == 0 {
			return nil, fail("architecture llama without experts is not read (only Mixtral-style llama files)")
		}
		cfg["model_type"], cfg["architectures"] = "mixtral", []string{"MixtralForCausalLM"}
		cfg["num_local_experts"] = int(n)
		if cfg["num_experts_per_tok"], err = u("expert_used_count"); err != nil {
			return nil, err
		}
		if v, ok := f.Uint("llama.attention.key_length"); ok {
			cfg["head_dim"] = int(v)
		} else if v, ok := f.Uint("llama.rope.dimension_count"); ok {
			cfg["head_dim"] = int(v)
		}
	case "qwen3", "qwen3moe":
		cfg["model_type"], cfg["architectures"] = "qwen3", []string{"Qwen3ForCausalLM"}
		// head_dim: key_length, else llama.cpp's default hidden/heads.
		cfg["head_dim"] = cfg["hidden_size"].(int) / max(1, cfg["num_attention_heads"].(int))
		if v, ok := f.Uint(arch + ".attention.key_length"); ok {
			cfg["head_dim"] = int(v)
		}
		if v, ok := f.Uint(arch + ".attention.value_length"); ok && int(v) != cfg["head_dim"] {
			return nil, fail("metadata %s.attention.value_length=%d differs from key_length=%v", arch, v, cfg["head_dim"])
		}
		cfg["attention_bias"] = false
		if arch == "qwen3moe" {
			cfg["model_type"], cfg["architectures"] = "qwen3_moe", []string{"Qwen3MoeForCausalLM"}
			for _, k := range []struct{ gguf, hf string }{
				{"expert_count", "num_experts"}, {"expert_used_count", "num_experts_per_tok"},
				{"expert_feed_forward_length", "moe_intermediate_size"},
			} {
				v, err := u(k.gguf)
				if err != nil {
					return nil, err
				}
				cfg[k.hf] = v
			}
			cfg["norm_topk_prob"], cfg["decoder_sparse_step"], cfg["mlp_only_layers"] = true, 1, []int{}
		}
	default:
		return nil, fail("general.architecture %q is not read (supported: qwen2, qwen2moe, qwen3, qwen3moe, llama with experts)", arch)
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	c, err := hf.ParseConfig(data)
	if err != nil {
		return nil, fail("metadata: %v", err)
	}
	return c, nil
}

// ggufSource answers the forward pass's Hugging Face names from a GGUF file.
type ggufSource struct {
	f *gguf.File
	c *hf.Config
}

func (s *ggufSource) Config() *hf.Config { return s.c }
func (s *ggufSource) Close() error       { return s.f.Close() }

func (s *ggufSource) tensor(name string) (*gguf.Tensor, error) {
	t, ok := s.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %s", s.f.Path, name)
	}
	return t, nil
}

// vectorName maps the norms' Hugging Face names to GGUF names and their
// width (hidden_size, or head_dim for the q/k norms).
func (s *ggufSource) vectorName(name string) (string, int, bool) {
	h := s.c.HiddenSize
	if name == hf.FinalNorm {
		return "output_norm.weight", h, true
	}
	for i := 0; i < s.c.NumHiddenLayers; i++ {
		switch name {
		case hf.InputNorm(i):
			return fmt.Sprintf("blk.%d.attn_norm.weight", i), h, true
		case hf.PostAttentionNorm(i):
			return fmt.Sprintf("blk.%d.ffn_norm.weight", i), h, true
		}
		if s.c.HasQKNorm() {
			switch name {
			case hf.QNorm(i):
				return fmt.Sprintf("blk.%d.attn_q_norm.weight", i), s.c.HeadDim, true
			case hf.KNorm(i):
				return fmt.Sprintf("blk.%d.attn_k_norm.weight", i), s.c.HeadDim, true
			}
		}
	}
	return "", 0, false
}

func (s *ggufSource) Vector(name string) ([]float32, error) {
	gn, width, ok := s.vectorName(name)
	if !ok {
		return nil, fmt.Errorf("%s: no GGUF tensor for %s", s.f.Path, name)
	}
	t, err := s.tensor(gn)
	if err != nil {
		return nil, err
	}
	if !equalInts(t.Dims, []int{width}) {
		return nil, fmt.Errorf("%s: tensor %s has ne %v, want [%d]", s.f.Path, gn, t.Dims, width)
	}
	return t.Float32()
}

func (s *ggufSource) Matrix(name string) (gemm.Matrix, error) {
	if name != hf.EmbedTokens {
		return nil, fmt.Errorf("%s: no GGUF matrix for %s", s.f.Path, name)
	}
	t, err := s.tensor("token_embd.weight")
	if err != nil {
		return nil, err
	}
	if !equalInts(t.Dims, []int{s.c.HiddenSize, s.c.VocabSize}) {
		return nil, fmt.Errorf("%s: tensor token_embd.weight has ne %v, want [%d %d] (embedding_length, vocabulary)", s.f.Path, t.Dims, s.c.HiddenSize, s.c.VocabSize)
	}
	return matrixView(s.f.Path, t, 0, t.Dims[1], t.Dims[0], nil)
}

// Linear maps a linear layer to its GGUF tensor (a slice of the stacked
// tensor for an expert).
func (s *ggufSource) Linear(spec hf.Linear) (gemm.Matrix, []float32, error) {
	c := s.c
	i := spec.Layer
	var name string
	var perm []int // HF row r is GGUF row perm[r]
	switch spec.Kind {
	case hf.KindLMHead:
		name = "output.weight"
	case hf.KindAttention:
		proj := spec.Name[len(spec.Name)-len("q_proj"):]
		name = fmt.Sprintf("blk.%d.%s", i, map[string]string{hf.QProj: "attn_q", hf.KProj: "attn_k", hf.VProj: "attn_v", hf.OProj: "attn_output"}[proj])
		if c.ModelType == hf.Mixtral && (proj == hf.QProj || proj == hf.KProj) {
			heads := c.NumAttentionHeads
			if proj == hf.KProj {
				heads = c.NumKeyValueHeads
			}
			p := ropePermutation(heads, c.HeadDim)
			perm = make([]int, spec.Out)
			for r := range perm {
				perm[p(r)] = r
			}
		}
		name += ".weight"
	case hf.KindMLP:
		name = fmt.Sprintf("blk.%d.ffn_%s.weight", i, ffnName(spec.Proj))
	case hf.KindRouter:
		name = fmt.Sprintf("blk.%d.ffn_gate_inp.weight", i)
	case hf.KindSharedExpert:
		name = fmt.Sprintf("blk.%d.ffn_%s_shexp.weight", i, ffnName(spec.Proj))
	case hf.KindSharedExpertGate:
		name = fmt.Sprintf("blk.%d.ffn_gate_inp_shexp.weight", i)
	case hf.KindExpert:
		name = fmt.Sprintf("blk.%d.ffn_%s_exps.weight", i, ffnName(spec.Proj))
	default:
		return nil, nil, fmt.Errorf("%s: no GGUF tensor for %s", s.f.Path, spec.Name)
	}
	t, err := s.tensor(name)
	if err != nil {
		return nil, nil, err
	}
	index, want := 0, []int{spec.In, spec.Out}
	if spec.Kind == hf.KindExpert {
		index, want = spec.Expert, []int{spec.In, spec.Out, c.NumExperts}
	}
	if spec.Kind == hf.KindSharedExpertGate && len(t.Dims) == 1 {
		want = []int{spec.In}
	}
	if !equalInts(t.Dims, want) {
		return nil, nil, fmt.Errorf("%s: tensor %s has ne %v, want %v", s.f.Path, name, t.Dims, want)
	}
	w, err := matrixView(s.f.Path, t, index, spec.Out, spec.In, perm)
	if err != nil {
		return nil, nil, err
	}
	var bias []float32
	if spec.Bias {
		bt, err := s.tensor(strings.TrimSuffix(name, ".weight") + ".bias")
		if err != nil {
			return nil, nil, err
		}
		if bias, err = bt.Float32(); err != nil {
			return nil, nil, err
		}
		if perm != nil {
			b := make([]float32, len(bias))
			for r := range b {
				b[r] = bias[perm[r]]
			}
			bias = b
		}
	}
	return w, bias, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// matrixView is matrix index (of a stack) [rows, cols] of t, viewing the
// mapped bytes without copying (Q4_0: repacked for the int4 kernels); row r
// is the tensor's row perm[r] when perm is set.
func matrixView(path string, t *gguf.Tensor, index, rows, cols int, perm []int) (gemm.Matrix, error) {
	if t.Type == gguf.Q4_0 && rows%8 == 0 {
		rb := cols / gguf.QK * gguf.BlockBytesQ4_0
		if cols%gguf.QK != 0 || (index+1)*rows*rb > len(t.Bytes()) {
			return nil, fmt.Errorf("%s: tensor %s: matrix %d of [%d, %d] does not fit its data", path, t.Name, index, rows, cols)
		}
		return q4ToInt4(t.Bytes()[index*rows*rb:(index+1)*rows*rb], rows, cols, perm), nil
	}
	w, err := plainView(path, t, index, rows, cols)
	if err != nil || perm == nil {
		return w, err
	}
	return rowPermuted{w, perm}, nil
}

func plainView(path string, t *gguf.Tensor, index, rows, cols int) (gemm.Matrix, error) {
	rb, err := t.Type.RowBytes(cols)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %v", path, t.Name, err)
	}
	size := rows * rb
	b := t.Bytes()
	if (index+1)*size > len(b) {
		return nil, fmt.Errorf("%s: tensor %s: matrix %d of [%d, %d] is past its data", path, t.Name, index, rows, cols)
	}
	b = b[index*size : (index+1)*size]
	switch t.Type {
	case gguf.F32:
		if v, ok := view[float32](b); ok {
			return gemm.F32{Data: v, N: rows, K: cols}, nil
		}
	case gguf.F16:
		if v, ok := view[uint16](b); ok {
			return gemm.F16{Data: v, N: rows, K: cols}, nil
		}
	case gguf.BF16:
		if v, ok := view[uint16](b); ok {
			return gemm.BF16{Data: v, N: rows, K: cols}, nil
		}
	case gguf.Q4_0, gguf.Q8_0:
		return gguf.BlockMatrix{Type: t.Type, Data: b, N: rows, K: cols}, nil
	default:
		return nil, fmt.Errorf("%s: tensor %s has type %s; the forward pass reads F32, F16, BF16, Q8_0 and Q4_0", path, t.Name, t.Type)
	}
	x := make([]float32, rows*cols)
	if err := gguf.Decode(t.Type, x, b); err != nil {
		return nil, err
	}
	return gemm.F32{Data: x, N: rows, K: cols}, nil
}

// view reinterprets little-endian bytes as []T when aligned.
func view[T float32 | uint16](b []byte) ([]T, bool) {
	var z T
	size := int(unsafe.Sizeof(z))
	if len(b) == 0 || len(b)%size != 0 || uintptr(unsafe.Pointer(&b[0]))%uintptr(size) != 0 {
		return nil, false
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size), true
}

// rowPermuted is m with row r taken from m's row perm[r].
type rowPermuted struct {
	m    gemm.Matrix
	perm []int
}

func (p rowPermuted) Rows() int { return p.m.Rows() }
func (p rowPermuted) Cols() int { return p.m.Cols() }
func (p rowPermuted) Widen(dst []float32, ld, r0, r1, c0, c1 int) {
	for r := r0; r < r1; r++ {
		q := p.perm[r]
		p.m.Widen(dst[(r-r0)*ld:], ld, q, q+1, c0, c1)
	}
}

// GGUFTokenizer builds the tokenizer a GGUF file's tokenizer.* metadata
// describes: byte-level BPE (model "gpt2" with pre-tokenizer "qwen2"), or
// the Llama 2 / Mistral SentencePiece-style BPE (model "llama" with the
// merges moeforge's export writes beside the scores).
func GGUFTokenizer(path string) (*tokenizer.Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	model, _ := f.String("tokenizer.ggml.model")
	pre, _ := f.String("tokenizer.ggml.pre")
	llama := model == "llama"
	if !llama && (model != "gpt2" || pre != "qwen2") {
		return nil, fmt.Errorf("%s: tokenizer.ggml.model %q, pre %q: only byte-level BPE with the qwen2 pre-tokenizer, or model \"llama\" with merges, is read", path, model, pre)
	}
	tv, _ := f.Get("tokenizer.ggml.tokens")
	tokens, ok := tv.([]string)
	if !ok {
		return nil, fmt.Errorf("%s: tokenizer.ggml.tokens missing or not a string array", path)
	}
	yv, _ := f.Get("tokenizer.ggml.token_type")
	types, ok := yv.([]int32)
	if !ok || len(types) != len(tokens) {
		return nil, fmt.Errorf("%s: tokenizer.ggml.token_type missing or not %d i32 values", path, len(tokens))
	}
	mv, _ := f.Get("tokenizer.ggml.merges")
	merges, ok := mv.([]string)
	if !ok {
		return nil, fmt.Errorf("%s: tokenizer.ggml.merges missing or not a string array", path)
	}
	vocab := map[string]int{}
	var added []tokenizer.AddedToken
	unk := ""
	for id, s := range tokens {
		switch types[id] {
		case tokenNormal, tokenByte:
			vocab[s] = id
		case tokenUnknown:
			vocab[s], unk = id, s
			if llama {
				added = append(added, tokenizer.AddedToken{ID: id, Content: s, Special: true})
			}
		case tokenControl:
			if llama {
				vocab[s] = id // tokenizer.json's Llama vocab holds its specials too
			}
			added = append(added, tokenizer.AddedToken{ID: id, Content: s, Special: true})
		case tokenUserDefined:
			added = append(added, tokenizer.AddedToken{ID: id, Content: s})
		}
	}
	var tok *tokenizer.Tokenizer
	if llama {
		tok, err = tokenizer.NewLlamaBPE(vocab, merges, unk, added)
	} else {
		tok, err = tokenizer.NewQwen2BPE(vocab, merges, added)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return tok, nil
}

// q4ToInt4 repacks Q4_0 rows [n, k] into the int4 layout the products have
// SIMD kernels for (GPTQ v1: codes packed along the inputs, zero point 8,
// one f16 scale per 32 inputs). Every weight keeps its value exactly:
// Q4_0's (q − 8)·d is int4's scale·(q − zero) with zero 8. It costs one
// pass and a copy of the same size as the Q4_0 data, made at load time.
func q4ToInt4(b []byte, n, k int, perm []int) gemm.Int4 {
	const qk, bb = gguf.QK, gguf.BlockBytesQ4_0
	groups := k / qk
	m := gemm.Int4{
		QWeight: make([]int32, k/8*n),
		QZeros:  make([]int32, groups*n/8),
		Scales:  make([]uint16, groups*n),
		GIdx:    make([]int32, k),
		N:       n, K: k,
	}
	for i := range m.GIdx {
		m.GIdx[i] = int32(i / qk)
	}
	for i := range m.QZeros {
		m.QZeros[i] = 0x77777777 // stored zero − 1 = 7 for every output
	}
	rowBytes := groups * bb
	for c := 0; c < n; c++ {
		src := c
		if perm != nil {
			src = perm[c]
		}
		row := b[src*rowBytes : (src+1)*rowBytes]
		for g := 0; g < groups; g++ {
			blk := row[g*bb : (g+1)*bb]
			m.Scales[g*n+c] = uint16(blk[0]) | uint16(blk[1])<<8
			for j := 0; j < qk/2; j++ {
				lo, hi := uint32(blk[2+j]&15), uint32(blk[2+j]>>4)
				i0, i1 := g*qk+j, g*qk+j+qk/2
				m.QWeight[(i0/8)*n+c] |= int32(lo << (4 * (i0 % 8)))
				m.QWeight[(i1/8)*n+c] |= int32(hi << (4 * (i1 % 8)))
			}
		}
	}
	return m
}
