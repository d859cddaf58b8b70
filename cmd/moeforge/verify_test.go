package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/corpus"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/verify"
)

const (
	verifyTiny     = "fixtures/qwen2_moe_tiny/model"
	verifyTinyBF16 = "fixtures/qwen2_moe_tiny_sharded/model"
)

// verifyVariant writes a variant of the checkpoint src into a new
// directory: every tensor goes through edit (which returns the tensors to
// write in its place, none to drop it; nil edit keeps all), config.json
// through editConfig, and the other files are copied.
func verifyVariant(t *testing.T, src string, edit func(ts *safetensors.Tensor) []*safetensors.Tensor, editConfig func(cfg map[string]any)) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "variant")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := hf.CopyExtraFiles(src, dst); err != nil {
		t.Fatal(err)
	}
	cfgRaw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "config.json"), cfgRaw, 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var out []*safetensors.Tensor
	for _, name := range set.Names() {
		ts, _ := set.Tensor(name)
		if edit == nil {
			out = append(out, ts)
		} else {
			out = append(out, edit(ts)...)
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dst, "model.safetensors"), out, nil); err != nil {
		t.Fatal(err)
	}
	if editConfig != nil {
		p := filepath.Join(dst, "config.json")
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		editConfig(cfg)
		raw, _ = json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func verifyTensor(t *testing.T, name string, dtype safetensors.DType, shape []int, data []byte) *safetensors.Tensor {
	t.Helper()
	ts, err := safetensors.NewTensor(name, dtype, shape, data)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func verifyF32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// verifyFusedCopy restacks every MoE layer's per-expert tensors of an f32
// checkpoint into the fused layout (mlp.experts.gate_up_proj [E, 2I, H],
// down_proj [E, H, I]; Mixtral's router at mlp.gate): the same numbers,
// another file layout.
func verifyFusedCopy(t *testing.T, src string) string {
	t.Helper()
	cfg, err := hf.ReadConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	experts := map[string]bool{}
	var fused []*safetensors.Tensor
	for _, layer := range cfg.MoELayers() {
		var gateUp, down []byte
		for e := 0; e < cfg.NumExperts; e++ {
			for _, p := range []hf.Proj{hf.GateProj, hf.UpProj, hf.DownProj} {
				name := cfg.ExpertLinear(layer, e, p) + ".weight"
				ts, ok := set.Tensor(name)
				if !ok || ts.DType != safetensors.F32 {
					t.Fatalf("%s: want an F32 per-expert tensor", name)
				}
				experts[name] = true
				if p == hf.DownProj {
					down = append(down, ts.Bytes()...)
				} else {
					gateUp = append(gateUp, ts.Bytes()...)
				}
			}
		}
		E, H, I := cfg.NumExperts, cfg.HiddenSize, cfg.MoEIntermediateSize
		gu, dn := cfg.FusedExpertTensors(layer)
		fused = append(fused,
			verifyTensor(t, gu, safetensors.F32, []int{E, 2 * I, H}, gateUp),
			verifyTensor(t, dn, safetensors.F32, []int{E, H, I}, down))
	}
	// transformers 5 also moves Mixtral's router to mlp.gate in this layout.
	routers := map[string]string{}
	for _, layer := range cfg.MoELayers() {
		routers[cfg.RouterLinear(layer)+".weight"] = cfg.FusedRouterLinear(layer) + ".weight"
	}
	added := false
	dir := verifyVariant(t, src, func(ts *safetensors.Tensor) []*safetensors.Tensor {
		if r, ok := routers[ts.Name]; ok && r != ts.Name {
			return []*safetensors.Tensor{verifyTensor(t, r, ts.DType, ts.Shape, ts.Bytes())}
		}
		if experts[ts.Name] {
			if added {
				return nil
			}
			added = true
			return fused
		}
		return []*safetensors.Tensor{ts}
	}, nil)
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	gu, _ := cfg.FusedExpertTensors(1)
	if _, ok := ck.Weights.Tensor(gu); !ok || len(ck.Unexpected) > 0 || ck.Weights.Len() != set.Len()-len(experts)+len(fused) {
		t.Fatalf("fused copy: %d tensors, unexpected %v", ck.Weights.Len(), ck.Unexpected)
	}
	return dir
}

// verifyBusiestExpert is the expert of layer that model dir routes the most
// tokens of seqs to.
func verifyBusiestExpert(t *testing.T, dir string, layer int, seqs [][]int) int {
	t.Helper()
	m, err := model.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	counts := map[int32]int{}
	best := int32(0)
	hooks := &model.Hooks{Routing: func(l int, _ []float32, experts []int32, _ []float32) {
		if l != layer {
			return
		}
		for _, e := range experts {
			counts[e]++
			if counts[e] > counts[best] {
				best = e
			}
		}
	}}
	if _, err := m.Logits(context.Background(), &model.Batch{Seqs: seqs}, hooks); err != nil {
		t.Fatal(err)
	}
	return int(best)
}

// verifyCorruptedCopy scales one routed expert's down_proj in layer 1 by 1.5:
// the expert the model uses most on `--random 4 --seqlen 32` (seed 0).
func verifyCorruptedCopy(t *testing.T, src string) (dir string, expert int) {
	t.Helper()
	cfg, err := hf.ReadConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	expert = verifyBusiestExpert(t, src, 1, corpus.RandomIDs(4, 32, cfg.VocabSize, 0))
	target := cfg.ExpertLinear(1, expert, hf.DownProj) + ".weight"
	dir = verifyVariant(t, src, func(ts *safetensors.Tensor) []*safetensors.Tensor {
		if ts.Name != target {
			return []*safetensors.Tensor{ts}
		}
		w, err := ts.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			w[i] *= 1.5
		}
		return []*safetensors.Tensor{verifyTensor(t, ts.Name, safetensors.F32, ts.Shape, verifyF32Bytes(w))}
	}, nil)
	return dir, expert
}

// verifySmallerVocabCopy keeps the first 1000 rows of the embeddings and lm_head.
func verifySmallerVocabCopy(t *testing.T, src string) string {
	t.Helper()
	return verifyVariant(t, src, func(ts *safetensors.Tensor) []*safetensors.Tensor {
		if ts.Name != hf.EmbedTokens && ts.Name != hf.LMHead+".weight" {
			return []*safetensors.Tensor{ts}
		}
		r, err := ts.Rows(0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return []*safetensors.Tensor{r}
	}, func(cfg map[string]any) { cfg["vocab_size"] = 1000 })
}

// verifyJSON runs verify with --json and decodes the document.
func verifyJSON(t *testing.T, args ...string) (int, verify.Report, string) {
	t.Helper()
	code, stdout, stderr := runMoeforge(t, append([]string{"verify", "--json"}, args...)...)
	var rep verify.Report
	if code != 2 {
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("verify %v: exit %d, stdout is not one JSON document: %v\n%s\nstderr: %s", args, code, err, stdout, stderr)
		}
	}
	return code, rep, stderr
}

// TestVerifyGates runs the gate on pairs whose verdict is known.
func TestVerifyGates(t *testing.T) {
	ref := checkpointCopy(t, verifyTiny)
	self := checkpointCopy(t, verifyTiny)
	bf16 := checkpointCopy(t, verifyTinyBF16)
	fused := verifyFusedCopy(t, ref)
	corrupted, expert := verifyCorruptedCopy(t, ref)
	random := []string{"--random", "4", "--seqlen", "32"}
	tests := []struct {
		name      string
		cand      string
		args      []string
		code      int
		failed    []string
		divergent int // with --per-layer
	}{
		{"copy of itself passes exact", self, []string{"--expect", "exact"}, 0, []string{}, -1},
		{"fused experts pass exact", fused, []string{"--expect", "exact", "--per-layer"}, 0, []string{}, -1},
		{"bf16 fails exact", bf16, []string{"--expect", "exact", "--per-layer"}, 1, []string{"max_rel_logit"}, 0},
		{"bf16 passes a loose KL bound", bf16, []string{"--max-kl", "1e-3", "--min-top1", "0.9"}, 0, []string{}, -1},
		{"explicit flag overrides the preset", bf16, []string{"--expect", "exact", "--max-rel-logit", "0.5"}, 0, []string{}, -1},
		{"corrupted expert fails exact", corrupted, []string{"--expect", "exact", "--per-layer"}, 1, []string{"max_rel_logit"}, 1},
		{"corrupted expert fails the hidden-state gate", corrupted, []string{"--per-layer", "--max-rel-hidden", "1e-4"}, 1, []string{"max_rel_hidden"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--ref", ref, "--candidate", tc.cand}, random...)
			code, rep, stderr := verifyJSON(t, append(args, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q; report %+v", code, tc.code, stderr, rep)
			}
			if diff := cmp.Diff(tc.failed, rep.Failed); diff != "" {
				t.Errorf("failed (-want +got):\n%s", diff)
			}
			if rep.Pass != (tc.code == 0) || rep.Inputs.Source != "random" || rep.Inputs.Sequences != 4 || rep.Inputs.SeqLen != 32 || rep.Metrics.Positions != 128 {
				t.Errorf("report: %+v", rep)
			}
			if rep.Divergence != nil && rep.Divergence.Layer != tc.divergent {
				t.Errorf("first divergent layer %d, want %d; layers %+v", rep.Divergence.Layer, tc.divergent, rep.Layers)
			}
		})
	}

	t.Run("corrupted layers", func(t *testing.T) {
		_, rep, _ := verifyJSON(t, append([]string{"--ref", ref, "--candidate", corrupted, "--per-layer"}, random...)...)
		if len(rep.Layers) != 3 {
			t.Fatalf("layers %+v", rep.Layers)
		}
		// Layer 0 is untouched: bit-identical. Layer 1 holds the scaled
		// expert (index logged on failure).
		if l := rep.Layers[0]; l.RelError != 0 || l.Routing == nil || l.Routing.SetAgreement != 1 {
			t.Errorf("layer 0: %+v, want no difference", l)
		}
		if l := rep.Layers[1]; l.RelError < 1e-3 {
			t.Errorf("layer 1 (expert %d scaled): rel error %g, want ≥ 1e-3", expert, l.RelError)
		}
		if rep.Divergence.Rule != "largest_jump" || rep.Divergence.Layer != 1 {
			t.Errorf("without thresholds: divergence %+v, want layer 1 by largest jump", rep.Divergence)
		}
	})
}

// TestVerifyTextAndReport: the §4 protocol windows from the text, the human
// table marking the failed threshold, and the Markdown report.
func TestVerifyTextAndReport(t *testing.T) {
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	ref := checkpointCopy(t, verifyTiny)
	bf16 := checkpointCopy(t, verifyTinyBF16)
	report := filepath.Join(t.TempDir(), "summary.md")
	code, stdout, stderr := runMoeforge(t, "verify", "--ref", ref, "--candidate", bf16,
		"--text", filepath.Join(root, "tinyshakespeare.txt"), "--windows", "2", "--seqlen", "64",
		"--expect", "exact", "--max-kl", "1e-3", "--per-layer", "--report", report)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q\n%s", code, stderr, stdout)
	}
	for _, want := range []string{
		"2 sequences × 64 tokens (text ", "evaluation part after 90% of the characters",
		"≤ 0.0001   FAIL", "≤ 0.001    PASS", "first divergent layer: 0", "\nFAIL: max_rel_logit\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	md, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### ❌ moeforge verify: FAIL: max\\_rel\\_logit", "| ❌ FAIL |", "| ✅ PASS |", "| **0** ⚠ |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if stderr != "" {
		t.Errorf("stderr %q, want nothing (no terminal: no progress bar)", stderr)
	}
}

// TestVerifyIDs reads the fixture's reference input_ids.
func TestVerifyIDs(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny")
	ref, ids := filepath.Join(dir, "model"), filepath.Join(dir, "reference.safetensors")
	code, rep, stderr := verifyJSON(t, "--ref", ref, "--candidate", ref, "--ids", ids, "--expect", "exact")
	if code != 0 || rep.Inputs.Source != "ids" || rep.Inputs.File != ids || rep.Inputs.Sequences != 2 || rep.Inputs.SeqLen != 24 {
		t.Errorf("exit %d, stderr %q, inputs %+v", code, stderr, rep.Inputs)
	}
}

// TestVerifyNaNCandidate: a candidate whose logits turn NaN fails the check
// (exit 1) with one line naming the side.
func TestVerifyNaNCandidate(t *testing.T) {
	ref := checkpointCopy(t, verifyTiny)
	target := hf.AttnLinear(0, hf.QProj) + ".weight"
	nan := verifyVariant(t, ref, func(ts *safetensors.Tensor) []*safetensors.Tensor {
		if ts.Name != target {
			return []*safetensors.Tensor{ts}
		}
		w, err := ts.Float32()
		if err != nil {
			t.Fatal(err)
		}
		w[0] = float32(math.NaN())
		return []*safetensors.Tensor{verifyTensor(t, ts.Name, safetensors.F32, ts.Shape, verifyF32Bytes(w))}
	}, nil)
	code, _, stderr := runMoeforge(t, "verify", "--ref", ref, "--candidate", nan, "--random", "1", "--seqlen", "8")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "candidate logits are NaN") {
		t.Errorf("exit %d, stderr %q; want 1 and a line about NaN candidate logits", code, stderr)
	}
}

// TestVerifyBadInput: every input error exits 2 with one line on stderr
// naming what is wrong, and prints nothing on stdout.
func TestVerifyBadInput(t *testing.T) {
	ref := checkpointCopy(t, verifyTiny)
	vocab := verifySmallerVocabCopy(t, ref)
	fewer := verifyVariant(t, ref, nil, func(cfg map[string]any) {
		cfg["num_hidden_layers"] = 2
		cfg["layer_types"] = []string{"full_attention", "full_attention"}
	})
	badIDs := filepath.Join(t.TempDir(), "ids.safetensors")
	big := verifyTensor(t, "input_ids", safetensors.I64, []int{1, 2}, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 5), 5000))
	if err := safetensors.WriteFile(badIDs, []*safetensors.Tensor{big}, nil); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(t.TempDir(), "short.txt")
	if err := os.WriteFile(text, []byte("Too short to fill a window."), 0o644); err != nil {
		t.Fatal(err)
	}
	pair := []string{"--ref", ref, "--candidate", ref}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"different vocab", []string{"--ref", ref, "--candidate", vocab, "--random", "2"}, "vocabularies differ: reference has vocab_size 1024, candidate 1000"},
		{"different layer count", []string{"--ref", ref, "--candidate", fewer, "--random", "2", "--per-layer"}, "num_hidden_layers 3, candidate 2"},
		{"no input", pair, "--text FILE, --ids FILE or --random N"},
		{"two inputs", append(pair, "--random", "2", "--text", text), "not --text and --random"},
		{"unknown preset", append(pair, "--random", "2", "--expect", "close"), `unknown preset "close"`},
		{"hidden gate needs per-layer", append(pair, "--random", "2", "--max-rel-hidden", "1e-3"), "--max-rel-hidden needs --per-layer"},
		{"top1 above 1", append(pair, "--random", "2", "--min-top1", "90"), "min_top1: 90 is not a share"},
		{"windows with random", append(pair, "--random", "2", "--windows", "3"), "--windows applies to --text only"},
		{"zero random", append(pair, "--random", "0"), "--random 0"},
		{"missing ref", []string{"--ref", filepath.Join(t.TempDir(), "nope"), "--candidate", ref, "--random", "2"}, "nope: no such checkpoint directory"},
		{"missing candidate flag", []string{"--ref", ref, "--random", "2"}, "--candidate DIR are required"},
		{"id outside vocab", append(pair, "--ids", badIDs), "token id 5000 outside the vocabulary [0, 1024)"},
		{"beyond context", append(pair, "--random", "1", "--seqlen", "600"), "beyond max_position_embeddings=512"},
		{"text too short", append(pair, "--text", text, "--split-at", "0"), "fill only 0 windows"},
		{"missing text", append(pair, "--text", text+".missing"), "short.txt.missing"},
		{"positional argument", append(pair, "--random", "2", "extra"), "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMoeforge(t, append([]string{"verify"}, tc.args...)...)
			if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and one line containing %q", code, stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}
