package hf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/safetensors"
)

// TestTensorsMatchFixtures: Config.Tensors lists exactly the tensors
// transformers wrote for each checkpoint (names and shapes), and
// ParamCounts agrees with the tensors' element counts.
func TestTensorsMatchFixtures(t *testing.T) {
	for _, rel := range checkpoints {
		t.Run(rel, func(t *testing.T) {
			dir := materialized(t, rel)
			c, err := ReadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			var names []string
			for _, ts := range c.Tensors() {
				names = append(names, ts.Name)
				tt, ok := set.Tensor(ts.Name)
				if ok && !slices.Equal(tt.Shape, ts.Shape) {
					t.Errorf("%s: file shape %v, Tensors() says %v", ts.Name, tt.Shape, ts.Shape)
				}
			}
			slices.Sort(names)
			if diff := cmp.Diff(set.Names(), names); diff != "" {
				t.Errorf("-file +Tensors():\n%s", diff)
			}
			var elems, expertElems int64
			for _, n := range set.Names() {
				tt, _ := set.Tensor(n)
				elems += int64(tt.NumElements())
				if strings.Contains(n, ".experts.") {
					expertElems += int64(tt.NumElements())
				}
			}
			total, active := c.ParamCounts()
			if total != elems {
				t.Errorf("ParamCounts total %d, tensors hold %d elements", total, elems)
			}
			wantActive := elems
			if c.IsMoE() {
				wantActive = elems - expertElems*int64(c.NumExperts-c.NumExpertsPerTok)/int64(c.NumExperts)
			}
			if active != wantActive {
				t.Errorf("ParamCounts active %d, want %d", active, wantActive)
			}
		})
	}
}

// TestOpenFixtures opens every checkpoint and resolves every linear layer.
func TestOpenFixtures(t *testing.T) {
	for _, rel := range checkpoints {
		t.Run(rel, func(t *testing.T) {
			ck, err := Open(materialized(t, rel))
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if len(ck.Unexpected) != 0 {
				t.Errorf("unexpected tensors %v", ck.Unexpected)
			}
			c := ck.Config
			if ck.Weights.Len() != len(c.Tensors()) {
				t.Errorf("%d tensors, config needs %d", ck.Weights.Len(), len(c.Tensors()))
			}
			wantFiles := map[string]int{"fixtures/qwen2_moe_tiny_sharded/model": 14, "models/qwen2_moe_a60": 3}[rel]
			if wantFiles == 0 {
				wantFiles = 1
			}
			if len(ck.Weights.Files) != wantFiles || (ck.Weights.Index != nil) != (wantFiles > 1) {
				t.Errorf("%d files (index %v), want %d", len(ck.Weights.Files), ck.Weights.Index != nil, wantFiles)
			}
			n := 0
			for _, l := range ck.linears() {
				lw, err := ck.Linear(l)
				if err != nil {
					t.Fatal(err)
				}
				n++
				if lw.Quantized() || lw.Weight == nil || !slices.Equal(lw.Weight.Shape, []int{l.Out, l.In}) || lw.Weight.Name != l.Name+".weight" {
					t.Fatalf("%s: %+v", l.Name, lw)
				}
				if (lw.Bias != nil) != l.Bias {
					t.Errorf("%s: bias %v, want %v", l.Name, lw.Bias != nil, l.Bias)
				}
			}
			if c.TieWordEmbeddings {
				if _, err := ck.Tensor(LMHead + ".weight"); err == nil {
					t.Error("tied checkpoint has lm_head.weight")
				}
			}
			if _, err := ck.Tensor("nope"); err == nil || !strings.Contains(err.Error(), "nope") {
				t.Errorf("Tensor(nope): %v", err)
			}
		})
	}
}

// replaceTensor returns an edit that swaps the named tensor for a zero F32
// tensor of the given shape (or drops it when shape is nil).
func replaceTensor(t *testing.T, name string, shape []int) func([]*safetensors.Tensor) []*safetensors.Tensor {
	return func(ts []*safetensors.Tensor) []*safetensors.Tensor {
		var out []*safetensors.Tensor
		found := false
		for _, tt := range ts {
			if tt.Name != name {
				out = append(out, tt)
				continue
			}
			found = true
			if shape != nil {
				out = append(out, newTensor(t, name, shape...))
			}
		}
		if !found {
			t.Fatalf("no tensor %s to replace", name)
		}
		return out
	}
}

// editConfig rewrites dir/config.json through f.
func editConfig(t *testing.T, dir string, f func(c *Config)) {
	t.Helper()
	c, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	f(c)
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
}

// TestOpenErrors: each error names what is wrong and where.
func TestOpenErrors(t *testing.T) {
	moe := materialized(t, "fixtures/qwen2_moe_tiny/model")
	dense := materialized(t, "fixtures/qwen2_dense_tiny/model")
	keep := func(ts []*safetensors.Tensor) []*safetensors.Tensor { return ts }
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		want []string
	}{
		{"expert shape", func(t *testing.T) string {
			return rewriteCheckpoint(t, moe, replaceTensor(t, "model.layers.1.mlp.experts.7.up_proj.weight", []int{48, 64}))
		}, []string{"model.layers.1.mlp.experts.7.up_proj.weight", "[48 64]", "want [32 64]", "moe_intermediate_size=32"}},
		{"attention shape", func(t *testing.T) string {
			return rewriteCheckpoint(t, moe, replaceTensor(t, "model.layers.2.self_attn.k_proj.weight", []int{32, 64}))
		}, []string{"model.layers.2.self_attn.k_proj.weight", "want [64 64]", "num_key_value_heads=4"}},
		{"bias shape", func(t *testing.T) string {
			return rewriteCheckpoint(t, moe, replaceTensor(t, "model.layers.0.self_attn.q_proj.bias", []int{63}))
		}, []string{"model.layers.0.self_attn.q_proj.bias", "want [64]"}},
		{"embedding shape", func(t *testing.T) string {
			return rewriteCheckpoint(t, dense, replaceTensor(t, EmbedTokens, []int{1000, 64}))
		}, []string{EmbedTokens, "vocab_size=1024"}},
		{"config disagrees", func(t *testing.T) string {
			dir := rewriteCheckpoint(t, moe, keep)
			editConfig(t, dir, func(c *Config) { c.SharedExpertIntermediateSize = 96 })
			return dir
		}, []string{"model.layers.0.mlp.shared_expert.gate_proj.weight", "shared_expert_intermediate_size=96"}},
		{"router shape", func(t *testing.T) string {
			dir := rewriteCheckpoint(t, materialized(t, "fixtures/mixtral_tiny/model"), keep)
			editConfig(t, dir, func(c *Config) { c.NumExperts = 4; c.NumExpertsPerTok = 2 })
			return dir
		}, []string{"model.layers.0.block_sparse_moe.gate.weight", "num_local_experts=4"}},
		{"integer dtype", func(t *testing.T) string {
			return rewriteCheckpoint(t, dense, func(ts []*safetensors.Tensor) []*safetensors.Tensor {
				for i, tt := range ts {
					if tt.Name == FinalNorm {
						ts[i], _ = safetensors.NewTensor(FinalNorm, safetensors.I32, tt.Shape, tt.Bytes())
					}
				}
				return ts
			})
		}, []string{FinalNorm, "dtype I32"}},
		{"missing tensor", func(t *testing.T) string {
			return rewriteCheckpoint(t, moe, replaceTensor(t, "model.layers.2.mlp.experts.15.down_proj.weight", nil))
		}, []string{"missing tensor model.layers.2.mlp.experts.15.down_proj.weight"}},
		{"missing norm", func(t *testing.T) string {
			return rewriteCheckpoint(t, dense, replaceTensor(t, PostAttentionNorm(1), nil))
		}, []string{"missing tensor model.layers.1.post_attention_layernorm.weight"}},
		{"missing lm_head", func(t *testing.T) string {
			return rewriteCheckpoint(t, moe, replaceTensor(t, "lm_head.weight", nil))
		}, []string{"lm_head.weight", "tie_word_embeddings is false"}},
		{"missing config.json", func(t *testing.T) string {
			dir := rewriteCheckpoint(t, dense, keep)
			os.Remove(filepath.Join(dir, "config.json"))
			return dir
		}, []string{"no config.json"}},
		{"bad config.json", func(t *testing.T) string {
			dir := rewriteCheckpoint(t, dense, keep)
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "qwen2", "hidden_size": "x"}`), 0o644)
			return dir
		}, []string{"config.json", "hidden_size"}},
		{"no weights", func(t *testing.T) string {
			dir := t.TempDir()
			copyNonWeights(t, dense, dir)
			return dir
		}, []string{"no model.safetensors"}},
		{"nonexistent dir", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "nope")
		}, []string{"nope", "no such checkpoint directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.dir(t)
			ck, err := Open(dir)
			if err == nil {
				ck.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if !errors.Is(err, safetensors.ErrFormat) && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %q matches neither safetensors.ErrFormat nor os.ErrNotExist", msg)
			}
			for _, w := range append([]string{dir}, c.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestUnexpectedTensors: tensors the config does not need are reported, not rejected.
func TestUnexpectedTensors(t *testing.T) {
	dir := rewriteCheckpoint(t, materialized(t, "fixtures/qwen2_dense_tiny/model"), func(ts []*safetensors.Tensor) []*safetensors.Tensor {
		return append(ts, newTensor(t, "model.layers.0.mlp.extra.weight", 2, 2), newTensor(t, "lm_head.weight", 1024, 64))
	})
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if diff := cmp.Diff([]string{"lm_head.weight", "model.layers.0.mlp.extra.weight"}, ck.Unexpected); diff != "" {
		t.Error(diff)
	}
}

// fuse restacks a checkpoint's per-expert tensors into the fused layout
// (mlp.experts.gate_up_proj [E, 2I, H], gate rows first, and
// mlp.experts.down_proj [E, H, I]; Mixtral's router moves to mlp.gate, as
// transformers 5 renames it) and writes it with a DirWriter.
func fuse(t *testing.T, src string, maxShard int64) string {
	t.Helper()
	ck, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	c := ck.Config
	type item struct {
		info safetensors.Info
		data func() []byte
	}
	var items []item
	perExpert := map[string]bool{}
	for _, layer := range c.MoELayers() {
		gateUp, down := c.FusedExpertTensors(layer)
		var gu, dn []byte
		var dtype safetensors.DType
		for e := 0; e < c.NumExperts; e++ {
			for _, p := range []Proj{GateProj, UpProj} {
				tt, _ := ck.Weights.Tensor(c.ExpertLinear(layer, e, p) + ".weight")
				gu = append(gu, tt.Bytes()...)
				dtype = tt.DType
				perExpert[tt.Name] = true
			}
			tt, _ := ck.Weights.Tensor(c.ExpertLinear(layer, e, DownProj) + ".weight")
			dn = append(dn, tt.Bytes()...)
			perExpert[tt.Name] = true
		}
		E, H, I := c.NumExperts, c.HiddenSize, c.MoEIntermediateSize
		items = append(items,
			item{safetensors.Info{Name: gateUp, DType: dtype, Shape: []int{E, 2 * I, H}}, func() []byte { return gu }},
			item{safetensors.Info{Name: down, DType: dtype, Shape: []int{E, H, I}}, func() []byte { return dn }})
	}
	renamed := map[string]string{}
	for _, layer := range c.MoELayers() {
		renamed[c.RouterLinear(layer)+".weight"] = c.FusedRouterLinear(layer) + ".weight"
	}
	for _, n := range ck.Weights.Names() {
		if perExpert[n] {
			continue
		}
		tt, _ := ck.Weights.Tensor(n)
		info := safetensors.InfoOf(tt)
		if r, ok := renamed[n]; ok {
			info.Name = r
		}
		items = append(items, item{info, tt.Bytes})
	}
	dst := t.TempDir()
	plan := make([]safetensors.Info, len(items))
	for i, it := range items {
		plan[i] = it.info
	}
	w, err := safetensors.NewDirWriter(dst, plan, safetensors.WriterOptions{MaxShardSize: maxShard})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if err := w.Write(it.info.Name, it.data()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	copyNonWeights(t, src, dst)
	return dst
}

// TestFusedExperts: a checkpoint with experts in the fused layout resolves
// every expert projection to the same bytes as the per-expert layout.
func TestFusedExperts(t *testing.T) {
	for _, c := range []struct {
		rel      string
		maxShard int64
	}{
		{"fixtures/qwen2_moe_tiny/model", 0},
		{"fixtures/qwen2_moe_tiny_sharded/model", 200_000},
		{"fixtures/mixtral_tiny/model", 0},
	} {
		t.Run(c.rel, func(t *testing.T) {
			src := materialized(t, c.rel)
			fused := fuse(t, src, c.maxShard)
			a, err := Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := Open(fused)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if len(b.Unexpected) != 0 {
				t.Errorf("fused tensors reported as unexpected: %v", b.Unexpected)
			}
			if c.maxShard > 0 && len(b.Weights.Files) < 2 {
				t.Errorf("wanted a sharded fused checkpoint, got %d files", len(b.Weights.Files))
			}
			cfg := a.Config
			n := 0
			for _, layer := range cfg.MoELayers() {
				for _, l := range cfg.LayerLinears(layer) {
					if l.Kind != KindExpert {
						continue
					}
					wa, err := a.Linear(l)
					if err != nil {
						t.Fatal(err)
					}
					wb, err := b.Linear(l)
					if err != nil {
						t.Fatal(err)
					}
					if wb.Weight.DType != wa.Weight.DType || !slices.Equal(wb.Weight.Shape, wa.Weight.Shape) || !bytes.Equal(wb.Weight.Bytes(), wa.Weight.Bytes()) {
						t.Fatalf("%s: fused view %v differs from the per-expert tensor %v", l.Name, wb.Weight, wa.Weight)
					}
					n++
				}
			}
			if want := 3 * cfg.NumExperts * len(cfg.MoELayers()); n != want {
				t.Errorf("compared %d expert projections, want %d", n, want)
			}
			r, err := b.Report()
			if err != nil {
				t.Fatal(err)
			}
			if r.Experts.Layout != "fused" {
				t.Errorf("layout %q", r.Experts.Layout)
			}
		})
	}
}

// TestFusedExpertErrors: a fused tensor of the wrong shape names itself and
// the config keys; a missing projection in both layouts names both.
func TestFusedExpertErrors(t *testing.T) {
	fused := fuse(t, materialized(t, "fixtures/qwen2_moe_tiny/model"), 0)
	bad := rewriteCheckpoint(t, fused, replaceTensor(t, "model.layers.1.mlp.experts.down_proj", []int{16, 64, 16}))
	_, err := Open(bad)
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.experts.down_proj") || !strings.Contains(err.Error(), "moe_intermediate_size=32") {
		t.Errorf("bad fused shape: %v", err)
	}
	// The transposed layout [E, H, 2I] is refused by name, not read as
	// garbage (mixtral_tiny: H 64, I 96; in qwen2_moe_tiny H = 2I, where the
	// two layouts cannot be told apart).
	mixtral := fuse(t, materialized(t, "fixtures/mixtral_tiny/model"), 0)
	transposed := rewriteCheckpoint(t, mixtral, replaceTensor(t, "model.layers.1.mlp.experts.gate_up_proj", []int{8, 64, 192}))
	_, err = Open(transposed)
	if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.experts.gate_up_proj") || !strings.Contains(err.Error(), "transposed") {
		t.Errorf("transposed gate_up_proj: %v", err)
	}
	transposed = rewriteCheckpoint(t, fused, replaceTensor(t, "model.layers.0.mlp.experts.down_proj", []int{16, 32, 64}))
	_, err = Open(transposed)
	if err == nil || !strings.Contains(err.Error(), "model.layers.0.mlp.experts.down_proj") || !strings.Contains(err.Error(), "transposed") {
		t.Errorf("transposed down_proj: %v", err)
	}
	missing := rewriteCheckpoint(t, fused, replaceTensor(t, "model.layers.2.mlp.experts.gate_up_proj", nil))
	_, err = Open(missing)
	if err == nil || !strings.Contains(err.Error(), "model.layers.2.mlp.experts.0.gate_proj.weight") || !strings.Contains(err.Error(), "gate_up_proj") {
		t.Errorf("missing fused tensor: %v", err)
	}
}

// gptqCheckpoint replaces q_proj of layer 0 of the dense fixture by GPTQ
// tensors (group size 32) and adds a quantization_config; edit may break it.
func gptqCheckpoint(t *testing.T, edit func(ts []*safetensors.Tensor) []*safetensors.Tensor) string {
	t.Helper()
	src := materialized(t, "fixtures/qwen2_dense_tiny/model")
	name := AttnLinear(0, QProj)
	mk := func(suffix string, dtype safetensors.DType, shape ...int) *safetensors.Tensor {
		n := dtype.Size()
		for _, d := range shape {
			n *= d
		}
		tt, err := safetensors.NewTensor(name+suffix, dtype, shape, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	dir := rewriteCheckpoint(t, src, func(ts []*safetensors.Tensor) []*safetensors.Tensor {
		ts = replaceTensor(t, name+".weight", nil)(ts)
		ts = append(ts, mk(".qweight", safetensors.I32, 8, 64), mk(".qzeros", safetensors.I32, 2, 8),
			mk(".scales", safetensors.F16, 2, 64), mk(".g_idx", safetensors.I32, 64))
		if edit != nil {
			ts = edit(ts)
		}
		return ts
	})
	editConfig(t, dir, func(c *Config) {
		c.Quantization = &gptq.Config{QuantMethod: "gptq", Bits: 4, GroupSize: 32, Sym: true, CheckpointFormat: "gptq"}
	})
	return dir
}

func TestGPTQLinear(t *testing.T) {
	ck, err := Open(gptqCheckpoint(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	lw, err := ck.Linear(ck.Config.LayerLinears(0)[0])
	if err != nil {
		t.Fatal(err)
	}
	if !lw.Quantized() || lw.Weight != nil || lw.Bias == nil || lw.GIdx == nil || lw.Scales.DType != safetensors.F16 {
		t.Errorf("q_proj resolved as %+v", lw)
	}
	if len(ck.Unexpected) != 0 {
		t.Errorf("GPTQ tensors reported as unexpected: %v", ck.Unexpected)
	}
	r, err := ck.Report()
	if err != nil {
		t.Fatal(err)
	}
	want := &QuantReport{Method: "gptq", Bits: 4, GroupSize: 32, Sym: true, CheckpointFormat: "gptq", QuantizedLinears: 1, Linears: 3 * 7, LinearsByBits: map[string]int{"4": 1}}
	if diff := cmp.Diff(want, r.Quantization); diff != "" {
		t.Error(diff)
	}
	if r.DTypes["I32"].Tensors != 3 || r.DTypes["F16"].Tensors != 1 {
		t.Errorf("dtypes %v", r.DTypes)
	}

	bad := gptqCheckpoint(t, replaceTensor(t, "model.layers.0.self_attn.q_proj.qzeros", []int{2, 8}))
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "q_proj.qzeros") || !strings.Contains(err.Error(), "want I32 [2 8]") {
		t.Errorf("F32 qzeros: %v", err)
	}
	missing := gptqCheckpoint(t, replaceTensor(t, "model.layers.0.self_attn.q_proj.g_idx", nil))
	if _, err := Open(missing); err == nil || !strings.Contains(err.Error(), "missing tensor model.layers.0.self_attn.q_proj.g_idx") {
		t.Errorf("missing g_idx: %v", err)
	}
}

// TestCopyExtraFiles: tokenizer, generation config, chat template and other
// non-weight files travel; weights and config do not.
func TestCopyExtraFiles(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"tokenizer.json": `{"model": {}}`, "tokenizer_config.json": "{}", "generation_config.json": `{"do_sample": false}`,
		"chat_template.jinja": "{{ messages }}", "README.md": "# model",
		"config.json": "{}", "model.safetensors": "x", "model-00001-of-00002.safetensors": "x",
		"model.safetensors.index.json": "{}", "quantize_config.json": "{}", "pytorch_model.bin": "x", ".hidden": "x",
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(src, "subdir"), 0o755)
	dst := t.TempDir()
	copied, err := CopyExtraFiles(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(copied)
	want := []string{"README.md", "chat_template.jinja", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
	if diff := cmp.Diff(want, copied); diff != "" {
		t.Error(diff)
	}
	entries, _ := os.ReadDir(dst)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
		data, _ := os.ReadFile(filepath.Join(dst, e.Name()))
		if string(data) != files[e.Name()] {
			t.Errorf("%s: content %q, want %q", e.Name(), data, files[e.Name()])
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in dst: %s", diff)
	}
	if _, err := CopyExtraFiles(filepath.Join(src, "nope"), dst); err == nil {
		t.Error("missing source accepted")
	}
}
