// Command gendense writes a random-weight dense Qwen2 checkpoint of a real
// shape, for scale runs of moeforge (bench/scale.sh). The default shape is
// Qwen1.5-1.8B-like — hidden 2048, 24 layers, 16 heads, FFN 5632, vocab
// 151936, bf16 (3.7 GB) — the dense model Qwen1.5-MoE-A2.7B was upcycled from.
//
//	go run ./bench/gendense --out /data/dense [--layers 24] [--vocab 151936] [--dtype bf16]
//
// Weights are drawn N(0, std²) (std = initializer_range, 0.02), norms are 1,
// biases N(0, std²); every tensor has its own seeded stream, so the output is
// byte-identical for the same flags, and tensors are generated on all cores
// ahead of the writer. The tokenizer files of --tokenizer (default
// testdata/tokenizer, 1024 tokens) are copied so text commands work; its ids
// are all below the vocabulary size.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
)

type shape struct {
	Hidden, Layers, Heads, KVHeads, FFN, Vocab int
	DType                                      string
	Std                                        float64
	Tie                                        bool
}

func main() {
	var s shape
	out := flag.String("out", "", "output checkpoint directory (must not exist)")
	flag.IntVar(&s.Hidden, "hidden", 2048, "hidden_size")
	flag.IntVar(&s.Layers, "layers", 24, "num_hidden_layers")
	flag.IntVar(&s.Heads, "heads", 16, "num_attention_heads")
	flag.IntVar(&s.KVHeads, "kv-heads", 16, "num_key_value_heads")
	flag.IntVar(&s.FFN, "ffn", 5632, "intermediate_size")
	flag.IntVar(&s.Vocab, "vocab", 151936, "vocab_size")
	flag.StringVar(&s.DType, "dtype", "bf16", "bf16, f16 or f32")
	flag.Float64Var(&s.Std, "std", 0.02, "standard deviation of the weights (initializer_range)")
	flag.BoolVar(&s.Tie, "tie", false, "tie_word_embeddings (no lm_head.weight)")
	tok := flag.String("tokenizer", "testdata/tokenizer", "directory whose tokenizer files are copied")
	shard := flag.String("max-shard-size", "5GB", "shard size limit")
	seed := flag.Uint64("seed", 0, "random seed")
	flag.Parse()
	if err := run(*out, s, *tok, *shard, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gendense:", err)
		os.Exit(2)
	}
}

func run(out string, s shape, tokDir, shardSize string, seed uint64) error {
	if out == "" {
		return fmt.Errorf("--out is required")
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists", out)
	}
	dt, ok := map[string]safetensors.DType{"bf16": safetensors.BF16, "f16": safetensors.F16, "f32": safetensors.F32}[s.DType]
	if !ok {
		return fmt.Errorf("--dtype %q: want bf16, f16 or f32", s.DType)
	}
	if s.Hidden%s.Heads != 0 || s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("hidden %d, heads %d, kv heads %d do not divide", s.Hidden, s.Heads, s.KVHeads)
	}
	limit, err := safetensors.ParseSize(shardSize)
	if err != nil {
		return err
	}
	plan := tensors(s, dt)
	var total int64
	for _, t := range plan {
		total += t.info.ByteSize()
	}
	tmp := out + ".tmp-gendense"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	infos := make([]safetensors.Info, len(plan))
	for i, t := range plan {
		infos[i] = t.info
	}
	w, err := safetensors.NewDirWriter(tmp, infos, safetensors.WriterOptions{MaxShardSize: limit})
	if err != nil {
		return err
	}
	start := time.Now()
	// Workers fill tensors ahead of the writer; results arrive in plan order.
	workers := runtime.GOMAXPROCS(0)
	results := make([]chan []byte, len(plan))
	for i := range results {
		results[i] = make(chan []byte, 1)
	}
	jobs := make(chan int)
	sem := make(chan struct{}, workers+1) // bounds tensors held in memory
	go func() {
		for i := range plan {
			sem <- struct{}{}
			jobs <- i
		}
		close(jobs)
	}()
	for k := 0; k < workers; k++ {
		go func() {
			for i := range jobs {
				results[i] <- plan[i].fill(seed, uint64(i))
			}
		}()
	}
	var written int64
	step := total / 20
	nextReport := step
	for i, t := range plan {
		data := <-results[i]
		if err := w.Write(t.info.Name, data); err != nil {
			w.Abort()
			return err
		}
		<-sem
		written += int64(len(data))
		if written >= nextReport || i == len(plan)-1 {
			fmt.Fprintf(os.Stderr, "gendense: %3.0f%% (%s)\n", 100*float64(written)/float64(total), t.info.Name)
			nextReport = written + step
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := writeConfig(tmp, s); err != nil {
		return err
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} {
		data, err := os.ReadFile(filepath.Join(tokDir, name))
		if err != nil {
			if os.IsNotExist(err) && name != "tokenizer.json" {
				continue
			}
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "gendense: %s: %d tensors, %.2f GB in %.1f s (%.0f MB/s)\n", out, len(plan), float64(total)/1e9, el, float64(total)/1e6/el)
	return nil
}

type tensor struct {
	info safetensors.Info
	kind int // 0 normal(std), 1 ones
	std  float64
}

func tensors(s shape, dt safetensors.DType) []tensor {
	hd := s.Hidden / s.Heads
	kv := hd * s.KVHeads
	w := func(name string, shape ...int) tensor {
		return tensor{info: safetensors.Info{Name: name, DType: dt, Shape: shape}, std: s.Std}
	}
	ones := func(name string, n int) tensor {
		return tensor{info: safetensors.Info{Name: name, DType: dt, Shape: []int{n}}, kind: 1}
	}
	ts := []tensor{w("model.embed_tokens.weight", s.Vocab, s.Hidden)}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			ones(p+"input_layernorm.weight", s.Hidden),
			w(p+"self_attn.q_proj.weight", s.Hidden, s.Hidden), w(p+"self_attn.q_proj.bias", s.Hidden),
			w(p+"self_attn.k_proj.weight", kv, s.Hidden), w(p+"self_attn.k_proj.bias", kv),
			w(p+"self_attn.v_proj.weight", kv, s.Hidden), w(p+"self_attn.v_proj.bias", kv),
			w(p+"self_attn.o_proj.weight", s.Hidden, s.Hidden),
			ones(p+"post_attention_layernorm.weight", s.Hidden),
			w(p+"mlp.gate_proj.weight", s.FFN, s.Hidden),
			w(p+"mlp.up_proj.weight", s.FFN, s.Hidden),
			w(p+"mlp.down_proj.weight", s.Hidden, s.FFN),
		)
	}
	ts = append(ts, ones("model.norm.weight", s.Hidden))
	if !s.Tie {
		ts = append(ts, w("lm_head.weight", s.Vocab, s.Hidden))
	}
	return ts
}

// fill produces the tensor's bytes from its own stream (seed, index).
func (t tensor) fill(seed, index uint64) []byte {
	n := int(t.info.ByteSize()) / t.info.DType.Size()
	out := make([]byte, t.info.ByteSize())
	rng := rand.New(rand.NewPCG(seed, 0x67656e64656e7365^index))
	for i := 0; i < n; i++ {
		v := float32(1)
		if t.kind == 0 {
			v = float32(rng.NormFloat64() * t.std)
		}
		switch t.info.DType {
		case safetensors.BF16:
			b := half.F32ToBF16(v)
			out[2*i], out[2*i+1] = byte(b), byte(b>>8)
		case safetensors.F16:
			b := half.F32ToF16(v)
			out[2*i], out[2*i+1] = byte(b), byte(b>>8)
		default:
			b := math.Float32bits(v)
			out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
		}
	}
	return out
}

func writeConfig(dir string, s shape) error {
	cfg := map[string]any{
		"architectures":           []string{"Qwen2ForCausalLM"},
		"model_type":              "qwen2",
		"hidden_size":             s.Hidden,
		"intermediate_size":       s.FFN,
		"num_hidden_layers":       s.Layers,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"vocab_size":              s.Vocab,
		"max_position_embeddings": 32768,
		"rms_norm_eps":            1e-6,
		"rope_theta":              1000000.0,
		"hidden_act":              "silu",
		"initializer_range":       s.Std,
		"tie_word_embeddings":     s.Tie,
		"torch_dtype":             map[string]string{"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[s.DType],
		"use_sliding_window":      false,
		"bos_token_id":            1021,
		"eos_token_id":            1021,
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644)
}
