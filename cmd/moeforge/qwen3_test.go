package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/internal/half"
	"github.com/moeforge/moeforge/model"
)

// qwen3Options choose the variant a test checkpoint is written in.
type qwen3Options struct {
	moe     bool
	fused   bool              // experts as mlp.experts.gate_up_proj / down_proj
	dtype   safetensors.DType // "" = F32
	shard   int64             // max shard size, 0 = one file
	edit    map[string]any    // config keys to set
	seed    uint64
	noTokzr bool
}

// writeQwen3 writes a tiny random qwen3 or qwen3_moe checkpoint built in Go
// (transformers-made fixtures of these architectures are pending a session
// with a device): GQA 4 q / 2 kv heads with head_dim 16 ≠ hidden/heads, the
// testdata tokenizer (vocab 1024), weights drawn at a scale that keeps
// activations of order one; for qwen3_moe 8 experts × 16, top-2, layer 1 dense.
func writeQwen3(t *testing.T, o qwen3Options) string {
	t.Helper()
	cfg := map[string]any{
		"model_type": "qwen3", "architectures": []string{"Qwen3ForCausalLM"},
		"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
		"vocab_size": 1024, "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
		"rope_parameters": map[string]any{"rope_theta": 1e6, "rope_type": "default"},
		"attention_bias":  false, "tie_word_embeddings": false, "eos_token_id": 1023, "dtype": "float32",
	}
	if o.moe {
		for k, v := range map[string]any{
			"model_type": "qwen3_moe", "architectures": []string{"Qwen3MoeForCausalLM"}, "num_hidden_layers": 3,
			"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "norm_topk_prob": true,
			"decoder_sparse_step": 1, "mlp_only_layers": []int{1},
		} {
			cfg[k] = v
		}
	}
	for k, v := range o.edit {
		cfg[k] = v
	}
	if o.dtype == "" {
		o.dtype = safetensors.F32
	}
	if o.dtype == safetensors.BF16 {
		cfg["dtype"] = "bfloat16"
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	c, err := hf.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(o.seed, 3))
	values := map[string][]float32{}
	var plan []safetensors.Info
	for _, spec := range c.Tensors() {
		n := 1
		for _, d := range spec.Shape {
			n *= d
		}
		v := make([]float32, n)
		switch {
		case len(spec.Shape) == 1 && strings.HasSuffix(spec.Name, "norm.weight"):
			for i := range v {
				v[i] = float32(1 + 0.4*(rng.Float64()-0.5))
			}
		case len(spec.Shape) == 1:
			for i := range v {
				v[i] = float32(0.4 * (rng.Float64() - 0.5))
			}
		default:
			s := 1.5 / math.Sqrt(float64(spec.Shape[1]))
			if spec.Name == hf.EmbedTokens {
				s = 1
			}
			for i := range v {
				v[i] = float32(s * rng.NormFloat64())
			}
		}
		values[spec.Name] = v
		plan = append(plan, safetensors.Info{Name: spec.Name, DType: o.dtype, Shape: spec.Shape})
	}
	if o.fused {
		var fusedPlan []safetensors.Info
		skip := map[string]bool{}
		for _, layer := range c.MoELayers() {
			gu, dn := c.FusedExpertTensors(layer)
			var guV, dnV []float32
			for e := 0; e < c.NumExperts; e++ {
				for _, p := range hf.FFNProjs {
					name := c.ExpertLinear(layer, e, p) + ".weight"
					skip[name] = true
					if p == hf.DownProj {
						dnV = append(dnV, values[name]...)
					} else {
						guV = append(guV, values[name]...)
					}
				}
			}
			values[gu], values[dn] = guV, dnV
			E, H, I := c.NumExperts, c.HiddenSize, c.MoEIntermediateSize
			fusedPlan = append(fusedPlan, safetensors.Info{Name: gu, DType: o.dtype, Shape: []int{E, 2 * I, H}},
				safetensors.Info{Name: dn, DType: o.dtype, Shape: []int{E, H, I}})
		}
		for _, info := range plan {
			if !skip[info.Name] {
				fusedPlan = append(fusedPlan, info)
			}
		}
		plan = fusedPlan
	}
	dir := filepath.Join(t.TempDir(), string(c.ModelType))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{MaxShardSize: o.shard})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range plan {
		v := values[info.Name]
		var b []byte
		if o.dtype == safetensors.BF16 {
			for _, x := range v {
				b = binary.LittleEndian.AppendUint16(b, half.F32ToBF16(x))
			}
		} else {
			for _, x := range v {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
			}
		}
		if err := w.Write(info.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !o.noTokzr {
		root, err := fixture.Root()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
			data, err := os.ReadFile(filepath.Join(root, "tokenizer", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// mustRun runs moeforge and requires the exit code.
func mustRun(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, stdout, stderr := runMoeforge(t, args...)
	if code != want {
		t.Fatalf("moeforge %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	if want == 2 {
		return stderr
	}
	return stdout
}

// TestQwen3Commands runs every command on qwen3 and qwen3_moe checkpoints
// in the per-expert, fused and bf16-sharded layouts: inspect, logits, eval
// ppl, verify, generate, quantize (GPTQ and RTN, output per-expert and
// loadable), convert split proven exact by --verify, and convert upcycle
// qwen3 → qwen3_moe by virtual-group proven exact, with the shared-expert
// recipes refused.
func TestQwen3Commands(t *testing.T) {
	corpusFile := quantizeCorpus(t)
	dense := writeQwen3(t, qwen3Options{seed: 1})
	moe := writeQwen3(t, qwen3Options{moe: true, seed: 2})
	fused := writeQwen3(t, qwen3Options{moe: true, fused: true, seed: 2})
	bf16 := writeQwen3(t, qwen3Options{moe: true, dtype: safetensors.BF16, shard: 20_000, seed: 2,
		edit: map[string]any{"tie_word_embeddings": true, "norm_topk_prob": false}})
	tmp := t.TempDir()

	t.Run("inspect", func(t *testing.T) {
		for _, tc := range []struct {
			dir, arch, layout string
		}{{dense, "qwen3", ""}, {moe, "qwen3_moe", "per-expert"}, {fused, "qwen3_moe", "fused"}, {bf16, "qwen3_moe", "per-expert"}} {
			var r hf.Report
			if err := json.Unmarshal([]byte(mustRun(t, 0, "inspect", "--json", tc.dir)), &r); err != nil {
				t.Fatal(err)
			}
			if r.Architecture != hf.Arch(tc.arch) || r.HeadDim != 16 || !r.QKNorm || len(r.Unexpected) != 0 {
				t.Errorf("%s: %+v", tc.dir, r)
			}
			if tc.layout != "" && (r.Experts == nil || r.Experts.Layout != tc.layout || r.Experts.SharedWidth != 0 ||
				!slices.Equal(r.Experts.DenseLayers, []int{1})) {
				t.Errorf("%s: experts %+v", tc.dir, r.Experts)
			}
		}
		table := mustRun(t, 0, "inspect", fused)
		for _, want := range []string{"qwen3_moe (Qwen3MoeForCausalLM)", "q/k norm", "8 routed × 16, 2 per token", "fused"} {
			if !strings.Contains(table, want) {
				t.Errorf("inspect table lacks %q:\n%s", want, table)
			}
		}
	})

	t.Run("logits eval generate", func(t *testing.T) {
		ids := filepath.Join(tmp, "ids.safetensors")
		writeQuantizeIDs(t, ids, 2, 12)
		for _, dir := range []string{dense, moe, fused, bf16} {
			out := filepath.Join(tmp, filepath.Base(filepath.Dir(dir))+".logits.safetensors")
			if s := mustRun(t, 0, "logits", dir, "--ids", ids, "--out", out); !strings.Contains(s, "logits [2 12 1024]") {
				t.Errorf("logits: %s", s)
			}
			var res pplResult
			if err := json.Unmarshal([]byte(mustRun(t, 0, "eval", "ppl", dir, "--text", corpusFile, "--windows", "2", "--seqlen", "32", "--json")), &res); err != nil {
				t.Fatal(err)
			}
			if !(res.PPL > 1) || math.IsInf(res.PPL, 0) || res.Tokens != 62 {
				t.Errorf("%s: eval %+v", dir, res)
			}
			if s := mustRun(t, 0, "generate", dir, "--prompt", "ROMEO:", "--max-new-tokens", "6", "--json"); !strings.Contains(s, "\"ids\"") {
				t.Errorf("generate: %s", s)
			}
		}
	})

	t.Run("verify fused against per-expert", func(t *testing.T) {
		s := mustRun(t, 0, "verify", "--ref", moe, "--candidate", fused, "--expect", "exact", "--random", "3", "--seqlen", "20", "--per-layer")
		if !strings.Contains(s, "PASS") {
			t.Errorf("verify: %s", s)
		}
	})

	t.Run("quantize", func(t *testing.T) {
		for _, tc := range []struct {
			name, in string
			args     []string
		}{
			{"gptq fused", fused, []string{"--calib", corpusFile, "--nsamples", "4", "--seqlen", "32", "--group-size", "16"}},
			{"rtn dense", dense, []string{"--method", "rtn"}},
			{"rtn bf16", bf16, []string{"--method", "rtn"}},
		} {
			out := filepath.Join(tmp, "q-"+strings.ReplaceAll(tc.name, " ", "-"))
			mustRun(t, 0, append([]string{"quantize", "--in", tc.in, "--out", out}, tc.args...)...)
			ck, err := hf.Open(out)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			c := ck.Config
			names := ck.Weights.Names()
			if c.IsMoE() {
				// vLLM maps experts.{e}.gate_proj/up_proj/down_proj: the output is per-expert.
				for _, want := range []string{c.ExpertLinear(2, 7, hf.UpProj) + ".qweight", c.ExpertLinear(0, 0, hf.DownProj) + ".g_idx", c.RouterLinear(0) + ".weight"} {
					if !slices.Contains(names, want) {
						t.Errorf("%s: output lacks %s", tc.name, want)
					}
				}
				gu, _ := c.FusedExpertTensors(0)
				if slices.Contains(names, gu) {
					t.Errorf("%s: output kept the fused %s", tc.name, gu)
				}
			}
			for _, want := range []string{hf.QNorm(1), hf.KNorm(0), hf.AttnLinear(1, hf.OProj) + ".qweight"} {
				if !slices.Contains(names, want) {
					t.Errorf("%s: output lacks %s", tc.name, want)
				}
			}
			if _, err := model.Load(ck); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			ck.Close()
			if tc.in != bf16 {
				mustRun(t, 0, "verify", "--ref", tc.in, "--candidate", out, "--random", "2", "--seqlen", "16", "--max-rel-logit", "1")
			}
		}
	})

	t.Run("convert split", func(t *testing.T) {
		for _, in := range []string{moe, fused} {
			out := filepath.Join(tmp, "split-"+filepath.Base(filepath.Dir(in)))
			s, code, err := runConvertCmd(t, "split", "--in", in, "--out", out, "--factor", "2", "--verify", "--random", "2", "--seqlen", "24")
			if code != 0 {
				t.Fatalf("exit %d: %v\n%s", code, err, s)
			}
			for _, want := range []string{"qwen3_moe → qwen3_moe", "8 × 16 top-2 → 16 × 8 top-4", "exact: PASS"} {
				if !strings.Contains(s, want) {
					t.Errorf("split output lacks %q:\n%s", want, s)
				}
			}
			c, err := hf.ReadConfig(out)
			if err != nil || c.NumExperts != 16 || c.HasSharedExpert() || !c.HasQKNorm() {
				t.Errorf("split config %+v, %v", c, err)
			}
		}
	})

	t.Run("convert upcycle", func(t *testing.T) {
		out := filepath.Join(tmp, "upcycled")
		s, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "virtual-group", "--expert-size", "16",
			"--verify", "--random", "2", "--seqlen", "24")
		if code != 0 {
			t.Fatalf("exit %d: %v\n%s", code, err, s)
		}
		for _, want := range []string{"qwen3 → qwen3_moe", "exact: PASS"} {
			if !strings.Contains(s, want) {
				t.Errorf("upcycle output lacks %q:\n%s", want, s)
			}
		}
		ck, err := hf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		c := ck.Config
		if c.ModelType != hf.Qwen3MoE || c.NumExperts != 16 || c.NumExpertsPerTok != 4 || !c.NormTopKProb || c.HasSharedExpert() || c.HeadDim != 16 || len(ck.Unexpected) != 0 {
			t.Errorf("upcycled config %+v, unexpected %v", c, ck.Unexpected)
		}
		for _, n := range ck.Weights.Names() {
			if strings.Contains(n, "shared_expert") {
				t.Errorf("qwen3_moe output holds %s", n)
			}
		}
		ck.Close()
		var keys map[string]any
		if err := json.Unmarshal(mustRead(t, filepath.Join(out, "config.json")), &keys); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"shared_expert_intermediate_size", "qkv_bias"} {
			if _, ok := keys[k]; ok {
				t.Errorf("qwen3_moe config has the Qwen2-MoE key %s", k)
			}
		}
		for k, want := range map[string]any{"model_type": "qwen3_moe", "num_experts": 16.0, "norm_topk_prob": true, "attention_bias": false, "head_dim": 16.0} {
			if keys[k] != want {
				t.Errorf("config %s = %v, want %v", k, keys[k], want)
			}
		}
		for _, mode := range []string{"shared-exact", "hybrid-exact"} {
			s, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", filepath.Join(tmp, mode), "--init", mode, "--expert-size", "16")
			if code != 2 || err == nil || !strings.Contains(err.Error(), "no shared expert") || !strings.Contains(err.Error(), "virtual-group") {
				t.Errorf("%s: exit %d, %v\n%s", mode, code, err, s)
			}
			if _, err := os.Stat(filepath.Join(tmp, mode)); err == nil {
				t.Errorf("%s: refused, but left an output behind", mode)
			}
		}
		_, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", filepath.Join(tmp, "x"), "--init", "virtual-group", "--shared-size", "16")
		if code != 2 || !strings.Contains(err.Error(), "--shared-size") {
			t.Errorf("--shared-size for qwen3_moe: exit %d, %v", code, err)
		}
	})

	t.Run("convert upcycle carve", func(t *testing.T) {
		root, err := fixture.Root()
		if err != nil {
			t.Fatal(err)
		}
		text := filepath.Join(root, "tinyshakespeare.txt")
		out := filepath.Join(tmp, "carved")
		s, code, err := runConvertCmd(t, "upcycle", "--in", dense, "--out", out, "--init", "carve", "--calib", text,
			"--nsamples", "4", "--calib-seqlen", "32", "--expert-size", "8", "--verify", "--random", "2", "--seqlen", "24")
		if code != 0 {
			t.Fatalf("exit %d: %v\n%s", code, err, s)
		}
		for _, want := range []string{"upcycle carve (approximate): qwen3 → qwen3_moe", "experts   8 × 8, top-4, norm_topk_prob true",
			"shared    0: none (qwen3_moe has no shared expert)", "32 of 64 FFN neurons active per token (50.0%): top-4 × 8, no shared expert"} {
			if !strings.Contains(s, want) {
				t.Errorf("carve output lacks %q:\n%s", want, s)
			}
		}
		ck, err := hf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		if c := ck.Config; c.ModelType != hf.Qwen3MoE || c.HasSharedExpert() || c.NumExperts != 8 || !c.NormTopKProb {
			t.Errorf("carved config %+v", c)
		}
		_, code, err = runConvertCmd(t, "upcycle", "--in", dense, "--out", filepath.Join(tmp, "y"), "--init", "carve", "--calib", text, "--shared-size", "16")
		if code != 2 || !strings.Contains(err.Error(), "no shared expert") {
			t.Errorf("carve --shared-size for qwen3_moe: exit %d, %v", code, err)
		}
	})
}

// TestFusedMixtralCommands: a Mixtral checkpoint in transformers 5's fused
// layout (block_sparse_moe renamed to mlp: mlp.gate, mlp.experts.gate_up_proj,
// mlp.experts.down_proj) verifies exact against the per-expert original,
// splits exactly, and quantizes to the per-expert GPTQ names vLLM's Mixtral
// loader maps (block_sparse_moe.experts.E.w1/w2/w3).
func TestFusedMixtralCommands(t *testing.T) {
	src := checkpointCopy(t, "fixtures/mixtral_tiny/model")
	fused := verifyFusedCopy(t, src)
	names := func(dir string) []string {
		ck, err := hf.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		return ck.Weights.Names()
	}
	if n := names(fused); !slices.Contains(n, "model.layers.0.mlp.gate.weight") || slices.Contains(n, "model.layers.0.block_sparse_moe.gate.weight") {
		t.Fatalf("fused copy names: %v", n)
	}
	mustRun(t, 0, "verify", "--ref", src, "--candidate", fused, "--expect", "exact", "--random", "2", "--seqlen", "16")
	split := filepath.Join(t.TempDir(), "split")
	if s, code, err := runConvertCmd(t, "split", "--in", fused, "--out", split, "--factor", "2", "--verify", "--random", "2", "--seqlen", "16"); code != 0 || !strings.Contains(s, "exact: PASS") {
		t.Fatalf("split: exit %d, %v\n%s", code, err, s)
	}
	q := filepath.Join(t.TempDir(), "q")
	mustRun(t, 0, "quantize", "--in", fused, "--out", q, "--method", "rtn")
	n := names(q)
	for _, want := range []string{"model.layers.1.block_sparse_moe.experts.7.w1.qweight", "model.layers.0.block_sparse_moe.experts.0.w2.scales", "model.layers.0.block_sparse_moe.gate.weight"} {
		if !slices.Contains(n, want) {
			t.Errorf("quantized output lacks %s", want)
		}
	}
	for _, name := range n {
		if strings.Contains(name, ".mlp.") {
			t.Errorf("quantized output keeps the fused-layout name %s", name)
		}
	}
}
