package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/gptq"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture"
	"github.com/moeforge/moeforge/model"
	"github.com/moeforge/moeforge/quantize"
)

func quantizeCorpus(t *testing.T) string {
	t.Helper()
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "tinyshakespeare.txt")
}

// TestQuantizeCommand runs quantize end to end on the tiny MoE fixture with
// text calibration (group 32 and act-order, so that several groups and a
// non-trivial g_idx are written) and checks the summary, the report file,
// and that the output loads and runs.
func TestQuantizeCommand(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "q")
	report := filepath.Join(tmp, "report.json")
	code, stdout, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib", quantizeCorpus(t),
		"--nsamples", "6", "--seqlen", "64", "--group-size", "32", "--desc-act", "--report", report)
	if code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"method gptq, 4-bit, group 32", "desc_act true", "calibration: 6 sequences × 64 tokens", "layer", "total: 165 modules"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep quantize.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Modules != 165 || len(rep.Modules) != 165 || rep.Output != out || !rep.DescAct || rep.GroupSize != 32 {
		t.Errorf("report: %d modules, output %q, desc_act %v, group %d", len(rep.Modules), rep.Output, rep.DescAct, rep.GroupSize)
	}
	ck, err := hf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if q := ck.Config.Quantization; q == nil || q.GroupSize != 32 || !q.DescAct || !q.Sym || q.Bits != 4 {
		t.Errorf("quantization_config = %+v", ck.Config.Quantization)
	}
	if _, err := gptq.ReadConfig(out); err != nil {
		t.Error(err)
	}
	if _, err := model.Load(ck); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".q.tmp") {
			t.Errorf("temporary directory %s left behind", e.Name())
		}
	}

	// --json prints the report instead of the summary; ids calibration; RTN.
	ids := filepath.Join(tmp, "ids.safetensors")
	writeQuantizeIDs(t, ids, 3, 16)
	for _, args := range [][]string{
		{"--calib-ids", ids, "--json", "--expert-fallback", "all-tokens"},
		{"--method", "rtn", "--json"},
	} {
		out2 := filepath.Join(tmp, "q2")
		code, stdout, stderr = runMoeforge(t, append([]string{"quantize", "--in", in, "--out", out2, "--force"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit code %d, stderr %q", args, code, stderr)
		}
		var r quantize.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%v: stdout is not one JSON document: %v\n%s", args, err, stdout)
		}
		if r.Totals.Modules != 165 {
			t.Errorf("%v: %d modules", args, r.Totals.Modules)
		}
	}
}

// writeQuantizeIDs writes input_ids [n, T] (I64) with small ids.
func writeQuantizeIDs(t *testing.T, path string, n, T int) {
	t.Helper()
	data := make([]byte, 8*n*T)
	for i := 0; i < n*T; i++ {
		binary.LittleEndian.PutUint64(data[8*i:], uint64((i*37)%1000))
	}
	tt, err := safetensors.NewTensor("input_ids", safetensors.I64, []int{n, T}, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(path, []*safetensors.Tensor{tt}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestQuantizeSeqlenNotice: a --seqlen beyond max_position_embeddings is
// capped with a notice on stderr.
func TestQuantizeSeqlenNotice(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_dense_tiny/model")
	out := filepath.Join(t.TempDir(), "q")
	code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib", quantizeCorpus(t),
		"--nsamples", "1", "--seqlen", "100000", "--group-size", "32")
	if code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stderr, "--seqlen 100000 exceeds max_position_embeddings; using 512") {
		t.Errorf("stderr %q lacks the seqlen notice", stderr)
	}
}

// TestQuantizeErrors: usage and input errors exit 2 with one line on stderr
// and leave no output directory.
func TestQuantizeErrors(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	corpus := quantizeCorpus(t)
	tmp := t.TempDir()
	nonEmpty := filepath.Join(tmp, "full")
	os.MkdirAll(nonEmpty, 0o755)
	os.WriteFile(filepath.Join(nonEmpty, "x"), []byte("x"), 0o644)
	ids := filepath.Join(tmp, "ids.safetensors")
	writeQuantizeIDs(t, ids, 2, 8)
	badIDs := filepath.Join(tmp, "bad.safetensors")
	writeQuantizeIDs(t, badIDs, 2, 40) // ids up to 999 < 1024: fine; made bad below
	poisoned := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	poisonTensor(t, filepath.Join(poisoned, "model.safetensors"), "model.layers.0.self_attn.k_proj.weight")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no calibration", []string{"--in", in, "--out", filepath.Join(tmp, "a")}, "GPTQ needs calibration data"},
		{"both calibrations", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--calib-ids", ids}, "not both"},
		{"bad method", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "awq"}, `--method "awq"`},
		{"5 bits", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--bits", "5"}, "--bits 5: want 2, 3, 4 or 8"},
		{"bad moe-calib", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--moe-calib", "top-k=0"}, "--moe-calib"},
		{"lm-head skipped by dynamic", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--lm-head", "--dynamic", `{"-:lm_head": {}}`}, "lm_head: --lm-head"},
		{"bad format", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--format", "marlin"}, `--format "marlin"`},
		{"dynamic not json", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", `{"+:.*": {"bits": 8}`}, "--dynamic"},
		{"dynamic unknown key", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", `{"+:.*": {"bitz": 8}}`}, "bitz"},
		{"dynamic bad bits", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", `{"+:.*self_attn.*": {"bits": 6}}`}, "bits=6"},
		{"dynamic missing file", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", filepath.Join(tmp, "none.json")}, "none.json"},
		{"dynamic splits experts", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", `{"+:.*\\.experts\\.3\\.": {"bits": 8}}`}, "vLLM fuses a layer's experts"},
		{"dynamic skips some experts", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--dynamic", `{"-:.*\\.experts\\.1[0-9]\\.": {}}`}, "experts different settings"},
		{"bad group size", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--group-size", "48"}, "group_size=48"},
		{"bad fallback", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--expert-fallback", "skip"}, `--expert-fallback "skip"`},
		{"damp", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--damp", "2"}, "--damp 2"},
		{"non-empty output", []string{"--in", in, "--out", nonEmpty, "--method", "rtn"}, "not empty (use --force"},
		{"missing corpus", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", filepath.Join(tmp, "none.txt")}, "none.txt"},
		{"ids beyond vocabulary", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib-ids", badIDs}, "outside the vocabulary"},
		{"seqlen with ids", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib-ids", ids, "--seqlen", "8"}, "--calib-ids gives the sequences"},
		{"NaN weight", []string{"--in", poisoned, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--nsamples", "2", "--seqlen", "16"}, "model.layers.0.self_attn.k_proj: weight"},
	}
	// Make badIDs hold an id beyond the tiny vocabulary (1024).
	{
		data, _ := os.ReadFile(badIDs)
		binary.LittleEndian.PutUint64(data[len(data)-8:], 5000)
		os.WriteFile(badIDs, data, 0o644)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runMoeforge(t, append([]string{"quantize"}, c.args...)...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("wrote to stdout: %q", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q: want one line containing %q", stderr, c.want)
			}
			if _, err := os.Stat(filepath.Join(tmp, "a")); err == nil {
				t.Error("output directory created on error")
			}
		})
	}
}

// poisonTensor overwrites the first element of a float32 tensor with NaN in
// a single-file checkpoint.
func poisonTensor(t *testing.T, path, name string) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*safetensors.Tensor
	for _, tt := range f.Tensors() {
		data := append([]byte(nil), tt.Bytes()...)
		if tt.Name == name {
			binary.LittleEndian.PutUint32(data, 0x7fc00000)
		}
		nt, err := safetensors.NewTensor(tt.Name, tt.DType, tt.Shape, data)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, nt)
	}
	f.Close()
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// TestQuantizeWidths: every --bits and --format writes a checkpoint that
// loads (layout and config agree), runs, and inspect reports; a v2 file
// declared v1 (or the reverse) is refused; 8-bit logits are closer to the
// float model's than 4-bit, and 4-bit closer than 2-bit.
func TestQuantizeWidths(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	tmp := t.TempDir()
	ck, err := hf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := model.Load(ck)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{1, 5, 77, 300, 12, 900, 41, 8}
	logits := func(m *model.Model) []float32 {
		l, err := m.Logits(context.Background(), &model.Batch{Seqs: [][]int{ids}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	want := logits(ref)
	errOf := map[string]float64{}
	for _, bits := range []string{"2", "3", "4", "8"} {
		for _, format := range []string{"gptq", "gptq_v2"} {
			out := filepath.Join(tmp, bits+format)
			args := []string{"quantize", "--in", in, "--out", out, "--method", "rtn", "--bits", bits, "--format", format, "--group-size", "32"}
			if format == "gptq_v2" {
				args = append(args, "--sym=false")
			}
			code, _, stderr := runMoeforge(t, args...)
			if code != 0 {
				t.Fatalf("%s %s: exit %d, %s", bits, format, code, stderr)
			}
			qc, err := gptq.ReadConfig(out)
			if err != nil || strconv.Itoa(qc.Bits) != bits || qc.CheckpointFormat != format {
				t.Fatalf("%s %s: quantize_config.json %+v, %v", bits, format, qc, err)
			}
			code, stdout, stderr := runMoeforge(t, "inspect", "--json", out)
			if code != 0 {
				t.Fatalf("inspect: exit %d, %s", code, stderr)
			}
			var rep hf.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if q := rep.Quantization; q == nil || strconv.Itoa(q.Bits) != bits || q.CheckpointFormat != format || q.LinearsByBits[bits] != q.QuantizedLinears || q.QuantizedLinears == 0 {
				t.Errorf("%s %s: inspect quantization %+v", bits, format, rep.Quantization)
			}
			// verify judges it (pass or fail on this random-weight model, not a usage error).
			code, stdout, stderr = runMoeforge(t, "verify", "--ref", in, "--candidate", out, "--random", "2", "--seqlen", "16", "--expect", "quantized", "--json")
			if code != 0 && code != 1 || !json.Valid([]byte(stdout)) {
				t.Errorf("%s %s: verify exit %d, %q", bits, format, code, stderr)
			}
			qck, err := hf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(qck)
			if err != nil {
				t.Fatal(err)
			}
			got := logits(m)
			var e, n float64
			for i := range got {
				d := float64(got[i] - want[i])
				e += d * d
				n += float64(want[i]) * float64(want[i])
			}
			errOf[bits+format] = math.Sqrt(e / n)
			qck.Close()
		}
	}
	for _, f := range []string{"gptq", "gptq_v2"} {
		if !(errOf["8"+f] < errOf["4"+f] && errOf["4"+f] < errOf["3"+f] && errOf["3"+f] < errOf["2"+f]) {
			t.Errorf("%s: relative logit error by bits %v: not decreasing with bits", f, errOf)
		}
	}
	// Declaring the other format is refused, by config or by the zeros.
	for _, tc := range []struct{ src, from, to string }{{"4gptq", `"checkpoint_format": "gptq"`, `"checkpoint_format": "gptq_v2"`}} {
		dir := filepath.Join(tmp, "mismatch")
		os.CopyFS(dir, os.DirFS(filepath.Join(tmp, tc.src)))
		qc, _ := os.ReadFile(filepath.Join(dir, gptq.ConfigFile))
		os.WriteFile(filepath.Join(dir, gptq.ConfigFile), []byte(strings.Replace(string(qc), tc.from, tc.to, 1)), 0o644)
		code, _, stderr := runMoeforge(t, "inspect", dir)
		if code != 2 || !strings.Contains(stderr, "checkpoint_format") {
			t.Errorf("config mismatch: exit %d, %q", code, stderr)
		}
		// Both files say v2, the zeros are v1's symmetric ones.
		cj, _ := os.ReadFile(filepath.Join(dir, "config.json"))
		var raw map[string]any
		if err := json.Unmarshal(cj, &raw); err != nil {
			t.Fatal(err)
		}
		raw["quantization_config"].(map[string]any)["checkpoint_format"] = "gptq_v2"
		cj, _ = json.Marshal(raw)
		os.WriteFile(filepath.Join(dir, "config.json"), cj, 0o644)
		code, _, stderr = runMoeforge(t, "inspect", dir)
		if code != 2 || !strings.Contains(stderr, "symmetric zero of the 4-bit gptq layout") {
			t.Errorf("zeros mismatch: exit %d, %q", code, stderr)
		}
	}
}

// TestQuantizeRTNIgnoresCalibration: --method rtn with GPTQ's flags warns
// and quantizes, so one command line switches methods.
func TestQuantizeRTNIgnoresCalibration(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	out := filepath.Join(t.TempDir(), "q")
	code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--method", "rtn", "--calib", quantizeCorpus(t), "--nsamples", "4", "--desc-act")
	if code != 0 {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if !strings.Contains(stderr, "warning: --method rtn uses no calibration; ignoring --calib, --nsamples, --desc-act") {
		t.Errorf("stderr %q lacks the warning", stderr)
	}
}

// TestQuantizeDynamic: GPTQModel-style overrides from a .json file:
// attention and the shared expert at 8 bits, experts at 4, layer 0 left
// float; a rule matching the router (mlp.gate) and shared_expert_gate does
// not quantize them. The output loads, inspect counts the widths, and
// config.json carries the rules for vLLM.
func TestQuantizeDynamic(t *testing.T) {
	in := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	tmp := t.TempDir()
	rules := filepath.Join(tmp, "dynamic.json")
	os.WriteFile(rules, []byte(`{"-:model\\.layers\\.0\\..*": {}, "+:.*(self_attn|shared_expert)\\..*": {"bits": 8}, "+:.*mlp\\.gate.*": {"bits": 2}}`), 0o644)
	out := filepath.Join(tmp, "q")
	code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib", quantizeCorpus(t), "--nsamples", "2", "--seqlen", "32",
		"--group-size", "32", "--dynamic", rules)
	if code != 0 {
		t.Fatalf("exit %d, %s", code, stderr)
	}
	ck, err := hf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if q := ck.Config.Quantization; q == nil || len(q.Dynamic) != 3 {
		t.Fatalf("config.json quantization_config %+v", ck.Config.Quantization)
	}
	for name, want := range map[string]string{
		"model.layers.0.self_attn.q_proj":            "float",
		"model.layers.0.mlp.experts.0.up_proj":       "float",
		"model.layers.1.self_attn.q_proj":            "8",
		"model.layers.1.mlp.shared_expert.down_proj": "8",
		"model.layers.2.mlp.experts.5.down_proj":     "4",
		"model.layers.2.mlp.gate":                    "float",
		"model.layers.2.mlp.shared_expert_gate":      "float",
		"model.layers.1.mlp.experts.15.gate_proj":    "4",
	} {
		_, isFloat := ck.Weights.Tensor(name + ".weight")
		qw, isQ := ck.Weights.Tensor(name + ".qweight")
		got := "float"
		if isQ {
			got = strconv.Itoa(qw.Shape[0] * 32 / ck.Config.HiddenSize)
			if strings.HasSuffix(name, "down_proj") && strings.Contains(name, "experts.") {
				got = strconv.Itoa(qw.Shape[0] * 32 / ck.Config.MoEIntermediateSize)
			} else if strings.HasSuffix(name, "down_proj") {
				got = strconv.Itoa(qw.Shape[0] * 32 / ck.Config.SharedExpertIntermediateSize)
			}
		}
		if (got == "float") != isFloat || got != want {
			t.Errorf("%s: stored as %s, want %s", name, got, want)
		}
	}
	if _, err := model.Load(ck); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runMoeforge(t, "inspect", out)
	if code != 0 || !strings.Contains(stdout, "3 dynamic rules") || !strings.Contains(stdout, "at 8-bit") || !strings.Contains(stdout, "at 4-bit") {
		t.Errorf("inspect:\n%s", stdout)
	}
}

// TestQuantizeLMHead: --lm-head quantizes lm_head with GPTQ; on a tied
// model the head is untied (its own GPTQ tensors, tie_word_embeddings
// false) and the embeddings stay float; the output loads and predicts like
// the input.
func TestQuantizeLMHead(t *testing.T) {
	for _, fixture := range []string{"qwen2_dense_tiny", "qwen2_moe_tiny"} {
		t.Run(fixture, func(t *testing.T) {
			in := checkpointCopy(t, "fixtures/"+fixture+"/model")
			out := filepath.Join(t.TempDir(), "q")
			code, stdout, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out, "--calib", quantizeCorpus(t), "--nsamples", "4", "--seqlen", "32",
				"--group-size", "32", "--bits", "8", "--lm-head", "--json")
			if code != 0 {
				t.Fatalf("exit %d, %s", code, stderr)
			}
			var rep quantize.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range rep.Modules {
				if m.Name == "lm_head" {
					found = m.Method == "gptq" && m.Tokens == 4*32
				}
			}
			if !found {
				t.Errorf("report has no GPTQ lm_head module on 128 tokens")
			}
			ck, err := hf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			if ck.Config.TieWordEmbeddings || ck.Config.Quantization == nil || !ck.Config.Quantization.LMHead {
				t.Errorf("tie_word_embeddings %v, quantization_config %+v", ck.Config.TieWordEmbeddings, ck.Config.Quantization)
			}
			if _, ok := ck.Weights.Tensor("lm_head.qweight"); !ok {
				t.Error("no lm_head.qweight")
			}
			if e, ok := ck.Weights.Tensor("model.embed_tokens.weight"); !ok || e.DType == safetensors.I32 {
				t.Error("embeddings not float")
			}
			src, err := hf.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			ref, _ := model.Load(src)
			m, err := model.Load(ck)
			if err != nil {
				t.Fatal(err)
			}
			b := &model.Batch{Seqs: [][]int{{3, 17, 99, 250, 4, 800}}}
			want, _ := ref.Logits(context.Background(), b, nil)
			got, _ := m.Logits(context.Background(), b, nil)
			var e, n float64
			for i := range got {
				d := float64(got[i] - want[i])
				e, n = e+d*d, n+float64(want[i])*float64(want[i])
			}
			// The same without --lm-head: quantizing the head adds little.
			out2 := filepath.Join(t.TempDir(), "q")
			if code, _, stderr := runMoeforge(t, "quantize", "--in", in, "--out", out2, "--calib", quantizeCorpus(t), "--nsamples", "4", "--seqlen", "32",
				"--group-size", "32", "--bits", "8"); code != 0 {
				t.Fatalf("exit %d, %s", code, stderr)
			}
			ck2, err := hf.Open(out2)
			if err != nil {
				t.Fatal(err)
			}
			defer ck2.Close()
			m2, _ := model.Load(ck2)
			got2, _ := m2.Logits(context.Background(), b, nil)
			var e2 float64
			for i := range got2 {
				d := float64(got2[i] - want[i])
				e2 += d * d
			}
			rel, rel2 := math.Sqrt(e/n), math.Sqrt(e2/n)
			t.Logf("8-bit relative logit error: %.4f with lm_head, %.4f without", rel, rel2)
			if rel > 0.05 || rel > 1.5*rel2+0.005 {
				t.Errorf("8-bit relative logit error %.4f with lm_head, %.4f without", rel, rel2)
			}
		})
	}
}
