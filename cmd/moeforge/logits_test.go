package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// wantInputError checks the contract for bad input: exit code 2, nothing on
// stdout, one line on stderr that mentions every string of want.
func wantInputError(t *testing.T, args []string, want ...string) {
	t.Helper()
	code, stdout, stderr := runMoeforge(t, args...)
	if code != 2 {
		t.Errorf("%v: exit code %d, want 2 (stderr %q)", args, code, stderr)
	}
	if stdout != "" {
		t.Errorf("%v: wrote to stdout: %q", args, stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "moeforge: ") {
		t.Errorf("%v: stderr is not one line: %q", args, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%v: stderr %q does not mention %q", args, stderr, w)
		}
	}
}

func readFloats(t *testing.T, f *safetensors.File, name string) ([]float32, []int) {
	t.Helper()
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %s", f.Tensors()[0].File, name)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, tt.Shape
}

// writeIDs writes a safetensors file with one integer tensor.
func writeIDs(t *testing.T, path, name string, dtype safetensors.DType, shape []int, ids []int64) {
	t.Helper()
	var data []byte
	for _, id := range ids {
		switch dtype {
		case safetensors.I64:
			data = binary.LittleEndian.AppendUint64(data, uint64(id))
		case safetensors.I32:
			data = binary.LittleEndian.AppendUint32(data, uint32(id))
		case safetensors.F32:
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(id)))
		}
	}
	tt, err := safetensors.NewTensor(name, dtype, shape, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(path, []*safetensors.Tensor{tt}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestLogitsCommand: logits on a fixture reproduces what transformers
// computed: nll within 1e-4 nats of the reference's, logits within 1e-4 ×
// max|logit|, for I64 and I32 ids and any batch size.
func TestLogitsCommand(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny")
	refPath := filepath.Join(dir, "reference.safetensors")
	ref, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	wantLogits, _ := readFloats(t, ref, "logits")
	wantNLL, nllShape := readFloats(t, ref, "nll")
	idsT, _ := ref.Tensor("input_ids")
	ids, _ := idsT.Int64s()

	i32 := filepath.Join(t.TempDir(), "ids32.safetensors")
	writeIDs(t, i32, "input_ids", safetensors.I32, idsT.Shape, ids)
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"i64", []string{"--ids", refPath}},
		{"i32 batch 1", []string{"--ids", i32, "--batch", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outPath := filepath.Join(out, tc.name+".safetensors")
			code, stdout, stderr := runMoeforge(t, append([]string{"logits", filepath.Join(dir, "model"), "--out", outPath}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "wrote "+outPath+": logits [2 24 1024] F32, nll [2 23] F32") {
				t.Errorf("stdout: %q", stdout)
			}
			f, err := safetensors.Open(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			gotNLL, shape := readFloats(t, f, "nll")
			if diff := cmp.Diff(nllShape, shape); diff != "" {
				t.Errorf("nll shape (-want +got):\n%s", diff)
			}
			for i := range wantNLL {
				if math.Abs(float64(gotNLL[i]-wantNLL[i])) > 1e-4 {
					t.Errorf("nll[%d] = %.6f, want %.6f (±1e-4)", i, gotNLL[i], wantNLL[i])
				}
			}
			gotLogits, shape := readFloats(t, f, "logits")
			if diff := cmp.Diff([]int{2, 24, 1024}, shape); diff != "" {
				t.Errorf("logits shape (-want +got):\n%s", diff)
			}
			var d, m float64
			for i := range wantLogits {
				d = math.Max(d, math.Abs(float64(gotLogits[i]-wantLogits[i])))
				m = math.Max(m, math.Abs(float64(wantLogits[i])))
			}
			if d > 1e-4*m {
				t.Errorf("logits: max |Δ| = %.3g > 1e-4 × %.3g", d, m)
			}
			gotIDs, _ := f.Tensor("input_ids")
			g, _ := gotIDs.Int64s()
			if diff := cmp.Diff(ids, g); diff != "" {
				t.Errorf("input_ids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("json and force", func(t *testing.T) {
		outPath := filepath.Join(out, "i64.safetensors") // exists from the first subtest
		code, stdout, stderr := runMoeforge(t, "logits", filepath.Join(dir, "model"), "--ids", refPath, "--out", outPath, "--force", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var res logitsResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%s", err, stdout)
		}
		var sum float64
		for _, v := range wantNLL {
			sum += float64(v)
		}
		if res.Sequences != 2 || res.Tokens != 24 || res.Vocab != 1024 || res.Predicted != 46 ||
			math.Abs(res.MeanNLL-sum/46) > 1e-4 || res.Out != outPath {
			t.Errorf("summary %+v; want 2 × 24 tokens, vocab 1024, 46 predicted, mean nll %.5f", res, sum/46)
		}
	})
}

// TestLogitsBadInput: every bad input exits 2 with one line naming the file
// or tensor, and leaves no output (or temporary file) behind.
func TestLogitsBadInput(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny")
	modelDir := filepath.Join(dir, "model")
	tmp := t.TempDir()
	in := func(name, tensor string, dtype safetensors.DType, shape []int, ids []int64) string {
		p := filepath.Join(tmp, name)
		writeIDs(t, p, tensor, dtype, shape, ids)
		return p
	}
	noIDs := in("noids.safetensors", "ids", safetensors.I64, []int{1, 2}, []int64{1, 2})
	f32 := in("f32.safetensors", "input_ids", safetensors.F32, []int{1, 2}, []int64{1, 2})
	flat := in("flat.safetensors", "input_ids", safetensors.I64, []int{2}, []int64{1, 2})
	big := in("big.safetensors", "input_ids", safetensors.I64, []int{2, 2}, []int64{1, 2, 3, 1024})
	long := in("long.safetensors", "input_ids", safetensors.I32, []int{1, 513}, make([]int64, 513))
	good := in("good.safetensors", "input_ids", safetensors.I64, []int{1, 3}, []int64{1, 2, 3})
	outDir := t.TempDir()
	out := filepath.Join(outDir, "out.safetensors")
	existing := filepath.Join(tmp, "existing.safetensors")
	os.WriteFile(existing, []byte("keep"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing input_ids", []string{"logits", modelDir, "--ids", noIDs, "--out", out}, []string{noIDs, "no tensor input_ids", "[ids]"}},
		{"wrong dtype", []string{"logits", modelDir, "--ids", f32, "--out", out}, []string{f32, "input_ids has dtype F32, want I64 or I32"}},
		{"not 2-D", []string{"logits", modelDir, "--ids", flat, "--out", out}, []string{flat, "shape [2], want [N, T]"}},
		{"id out of range", []string{"logits", modelDir, "--ids", big, "--out", out}, []string{big, "input_ids[1][1] = 1024", "[0, 1024)"}},
		{"too long", []string{"logits", modelDir, "--ids", long, "--out", out}, []string{long, "513 positions", "max_position_embeddings=512"}},
		{"nonexistent model", []string{"logits", filepath.Join(tmp, "nope"), "--ids", good, "--out", out}, []string{"nope", "no such checkpoint directory"}},
		{"nonexistent ids", []string{"logits", modelDir, "--ids", filepath.Join(tmp, "none.safetensors"), "--out", out}, []string{"none.safetensors"}},
		{"not safetensors", []string{"logits", modelDir, "--ids", filepath.Join(modelDir, "config.json"), "--out", out}, []string{"config.json"}},
		{"no --ids", []string{"logits", modelDir, "--out", out}, []string{"--ids IN.safetensors is required"}},
		{"no --out", []string{"logits", modelDir, "--ids", good}, []string{"--out OUT.safetensors is required"}},
		{"output exists", []string{"logits", modelDir, "--ids", good, "--out", existing}, []string{existing, "exists", "--force"}},
		{"output directory missing", []string{"logits", modelDir, "--ids", good, "--out", filepath.Join(tmp, "no", "x.safetensors")}, []string{"does not exist"}},
		{"no model argument", []string{"logits", "--ids", good, "--out", out}, []string{"accepts 1 arg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantInputError(t, tc.args, tc.want...)
		})
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("output directory holds %d entries after failed runs, want none", len(entries))
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep" {
		t.Errorf("existing output was modified without --force")
	}
}
