package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
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
		{"8 bits", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--bits", "8"}, "only 4-bit"},
		{"bad group size", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--group-size", "48"}, "group_size=48"},
		{"bad fallback", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--calib", corpus, "--expert-fallback", "skip"}, `--expert-fallback "skip"`},
		{"rtn with calibration", []string{"--in", in, "--out", filepath.Join(tmp, "a"), "--method", "rtn", "--calib", corpus}, "--method rtn uses no calibration"},
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
