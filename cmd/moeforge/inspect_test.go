package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/internal/fixture"
)

// inspectJSON is the part of `inspect --json` that scripts rely on.
type inspectJSON struct {
	Architecture string `json:"architecture"`
	ParamsTotal  int64  `json:"params_total"`
	ParamsActive int64  `json:"params_active"`
	WeightsRead  bool   `json:"weights_read"`
	DTypes       map[string]struct {
		Tensors int   `json:"tensors"`
		Bytes   int64 `json:"bytes"`
	} `json:"dtypes"`
	Shards struct {
		Count int   `json:"count"`
		Bytes int64 `json:"bytes"`
	} `json:"shards"`
	Experts *struct {
		Routed    int   `json:"routed"`
		PerToken  int   `json:"per_token"`
		MoELayers []int `json:"moe_layers"`
	} `json:"experts"`
}

// TestInspectJSONCheckpoints runs `inspect --json` on every checkpoint in
// testdata. The parameter counts are the tensors' element counts (checked
// against the files in formats/hf); active = total − the experts a token
// does not use.
func TestInspectJSONCheckpoints(t *testing.T) {
	cases := []struct {
		rel           string
		arch          string
		total, active int64
		dtype         string
		tensors       int
		shards        int
		experts       int
	}{
		{"fixtures/mixtral_tiny/model", "mixtral", 451904, 230720, "F32", 65, 1, 8},
		{"fixtures/qwen2_dense_tiny/model", "qwen2", 250688, 250688, "F32", 38, 1, 0},
		{"fixtures/qwen2_moe_tiny/model", "qwen2_moe", 553152, 331968, "F32", 189, 1, 16},
		{"fixtures/qwen2_moe_tiny_sharded/model", "qwen2_moe", 553152, 331968, "BF16", 189, 14, 16},
		{"models/qwen2_dense_small", "qwen2", 3476736, 3476736, "BF16", 39, 1, 0},
		{"models/qwen2_moe_small", "qwen2_moe", 6636288, 3097344, "BF16", 189, 1, 16},
		{"models/qwen2_moe_a60", "qwen2_moe", 10798848, 2541312, "BF16", 585, 3, 60},
	}
	for _, c := range cases {
		t.Run(c.rel, func(t *testing.T) {
			dir := checkpointCopy(t, c.rel)
			code, stdout, stderr := runMoeforge(t, "inspect", "--json", dir)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			dec := json.NewDecoder(strings.NewReader(stdout))
			var r inspectJSON
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
			}
			if dec.More() {
				t.Error("stdout holds more than one JSON document")
			}
			var raw map[string]json.RawMessage
			json.Unmarshal([]byte(stdout), &raw)
			for _, k := range []string{"architecture", "params_total", "params_active", "dtypes", "shards"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("no %q in the JSON", k)
				}
			}
			if r.Architecture != c.arch || r.ParamsTotal != c.total || r.ParamsActive != c.active || !r.WeightsRead {
				t.Errorf("got %s %d/%d (weights read %v), want %s %d/%d", r.Architecture, r.ParamsTotal, r.ParamsActive, r.WeightsRead, c.arch, c.total, c.active)
			}
			size := map[string]int64{"F32": 4, "BF16": 2}[c.dtype]
			if len(r.DTypes) != 1 || r.DTypes[c.dtype].Tensors != c.tensors || r.DTypes[c.dtype].Bytes != size*c.total {
				t.Errorf("dtypes %+v, want %s: %d tensors, %d bytes", r.DTypes, c.dtype, c.tensors, size*c.total)
			}
			if r.Shards.Count != c.shards || r.Shards.Bytes <= size*c.total {
				t.Errorf("shards %+v, want %d files holding more than %d bytes", r.Shards, c.shards, size*c.total)
			}
			if (r.Experts != nil) != (c.experts > 0) || r.Experts != nil && r.Experts.Routed != c.experts {
				t.Errorf("experts %+v, want %d", r.Experts, c.experts)
			}

			// The table says the same, aligned.
			code, table, stderr := runMoeforge(t, "inspect", dir)
			if code != 0 || stderr != "" {
				t.Fatalf("table: exit %d, stderr %q", code, stderr)
			}
			checkAligned(t, table)
			for _, w := range []string{"architecture " + c.arch, groupDigits(c.total) + " total", groupDigits(c.active) + " active per token"} {
				if !strings.Contains(squash(table), w) {
					t.Errorf("table does not say %q:\n%s", w, table)
				}
			}
		})
	}
}

// squash collapses the runs of spaces that align the table's columns.
func squash(table string) string {
	lines := strings.Split(table, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// checkAligned requires every row's value to start in the same column.
func checkAligned(t *testing.T, table string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	col := -1
	for _, l := range lines {
		i := strings.Index(l, "  ")
		if l == "" || i < 0 {
			t.Errorf("row without two columns: %q", l)
			continue
		}
		v := i + len(l[i:]) - len(strings.TrimLeft(l[i:], " "))
		if col < 0 {
			col = v
		} else if v != col {
			t.Errorf("row %q: value starts at column %d, others at %d", l, v, col)
		}
	}
}

// TestInspectTable is the whole human report of the Qwen2-MoE fixture.
func TestInspectTable(t *testing.T) {
	dir := checkpointCopy(t, "fixtures/qwen2_moe_tiny/model")
	code, stdout, stderr := runMoeforge(t, "inspect", dir)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	size, _ := os.Stat(filepath.Join(dir, "model.safetensors"))
	want := strings.Join([]string{
		"path                " + dir,
		"architecture        qwen2_moe (Qwen2MoeForCausalLM)",
		"layers              3",
		"hidden size         64",
		"attention           4 heads, 4 kv heads, head_dim 16, bias q/k/v",
		"experts             16 routed × 32, 4 per token",
		"shared expert       128 (sigmoid gate)",
		"norm_topk_prob      false",
		"MoE layers          0-2 (3 of 3)",
		"expert layout       per-expert",
		"parameters          553,152 total (553.15 K)",
		"                    331,968 active per token (331.97 K)",
		"vocab               1024",
		"tied embeddings     no",
		"rope theta          1e+06",
		"rms norm eps        1e-06",
		"max positions       512",
		"config dtype        float32",
		"quantization        none",
		"tensors             189",
		"dtypes              F32: 189 tensors, 2.21 MB",
		"shards              1 file, " + humanBytes(size.Size()),
		"                    model.safetensors",
		"unexpected tensors  none",
		"",
	}, "\n")
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
}

// TestInspectConfigOnly: a config file, or a directory with only a
// config.json, is reported without weights; Qwen1.5-MoE-A2.7B comes out at
// its published ≈14.3 B / ≈2.7 B parameters (within 1%).
func TestInspectConfigOnly(t *testing.T) {
	root, err := fixture.Root()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "fixtures/configs/qwen1.5-moe-a2.7b.json")
	dir := t.TempDir()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
	for _, p := range []string{file, dir} {
		code, stdout, stderr := runMoeforge(t, "inspect", "--json", p)
		if code != 0 || stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q", p, code, stderr)
		}
		var r inspectJSON
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		if r.WeightsRead || r.Shards.Count != 0 || len(r.DTypes) != 0 {
			t.Errorf("%s: weights reported for a config: %+v", p, r)
		}
		if math.Abs(float64(r.ParamsTotal)/14.3e9-1) > 0.01 || math.Abs(float64(r.ParamsActive)/2.7e9-1) > 0.01 {
			t.Errorf("%s: %d total / %d active, want ≈14.3e9 / ≈2.7e9", p, r.ParamsTotal, r.ParamsActive)
		}
		if r.Experts == nil || r.Experts.Routed != 60 || r.Experts.PerToken != 4 || len(r.Experts.MoELayers) != 24 {
			t.Errorf("%s: experts %+v", p, r.Experts)
		}
		code, table, _ := runMoeforge(t, "inspect", p)
		if code != 0 {
			t.Fatalf("table: exit %d", code)
		}
		checkAligned(t, table)
		for _, w := range []string{"\nweights not read (config only)\n", "14.32 B", "2.69 B", "\nMoE layers 0-23 (24 of 24)\n", "\nshared expert 5632 (sigmoid gate)\n"} {
			if !strings.Contains(squash(table), w) {
				t.Errorf("%s: table does not say %q:\n%s", p, w, table)
			}
		}
		if strings.Contains(table, "shards") || strings.Contains(table, "dtypes") {
			t.Errorf("%s: config-only table reports weights:\n%s", p, table)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{layerRanges([]int{0, 1, 2, 5, 7, 8}), "0-2, 5, 7-8"},
		{layerRanges([]int{3}), "3"},
		{layerRanges(nil), "none"},
		{groupDigits(14315784192), "14,315,784,192"},
		{groupDigits(999), "999"},
		{groupDigits(1000), "1,000"},
		{groupDigits(-1234567), "-1,234,567"},
		{humanCount(14315784192), "14.32 B"},
		{humanCount(2689173504), "2.69 B"},
		{humanCount(553152), "553.15 K"},
		{humanCount(12), "12"},
		{humanBytes(2_230_000), "2.23 MB"},
		{humanBytes(999), "999 B"},
		{humanBytes(5e9), "5.00 GB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
