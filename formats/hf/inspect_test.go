package hf

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// TestInspectCheckpoints inspects every checkpoint in testdata and checks
// the report against the files themselves.
func TestInspectCheckpoints(t *testing.T) {
	for _, rel := range checkpoints {
		t.Run(rel, func(t *testing.T) {
			dir := materialized(t, rel)
			r, err := Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			c, _ := ReadConfig(dir)
			if !r.WeightsRead || r.Path != dir || r.Architecture != c.ModelType || r.Layers != c.NumHiddenLayers {
				t.Errorf("report header: %+v", r)
			}
			dtypes := map[string]DTypeReport{}
			var elems int64
			for _, n := range set.Names() {
				tt, _ := set.Tensor(n)
				d := dtypes[string(tt.DType)]
				d.Tensors++
				d.Bytes += tt.ByteSize()
				dtypes[string(tt.DType)] = d
				elems += int64(tt.NumElements())
			}
			if diff := cmp.Diff(dtypes, r.DTypes); diff != "" {
				t.Errorf("dtypes: %s", diff)
			}
			if r.ParamsTotal != elems || r.Tensors != set.Len() {
				t.Errorf("params %d, tensors %d; files hold %d elements in %d tensors", r.ParamsTotal, r.Tensors, elems, set.Len())
			}
			var fileBytes int64
			entries, _ := os.ReadDir(dir)
			shards := 0
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".safetensors") {
					info, _ := e.Info()
					fileBytes += info.Size()
					shards++
				}
			}
			if r.Shards.Count != shards || len(r.Shards.Files) != shards || r.Shards.Bytes != fileBytes ||
				r.Shards.TensorBytes != set.TotalBytes() || r.Shards.Indexed != (shards > 1) {
				t.Errorf("shards %+v; dir holds %d files, %d bytes", r.Shards, shards, fileBytes)
			}
			if (r.Experts == nil) == c.IsMoE() {
				t.Fatalf("experts %+v for %s", r.Experts, c.ModelType)
			}
			if r.Experts != nil {
				want := &ExpertsReport{Routed: c.NumExperts, PerToken: c.NumExpertsPerTok, Width: c.MoEIntermediateSize,
					SharedWidth: c.SharedExpertIntermediateSize, NormTopKProb: c.NormTopKProb,
					MoELayers: c.MoELayers(), DenseLayers: []int{}, Layout: "per-expert"}
				if diff := cmp.Diff(want, r.Experts); diff != "" {
					t.Error(diff)
				}
				if r.ParamsActive >= r.ParamsTotal {
					t.Errorf("active %d ≥ total %d", r.ParamsActive, r.ParamsTotal)
				}
			} else if r.ParamsActive != r.ParamsTotal {
				t.Errorf("dense model: active %d ≠ total %d", r.ParamsActive, r.ParamsTotal)
			}
			if r.Quantization != nil || len(r.Unexpected) != 0 {
				t.Errorf("quantization %+v, unexpected %v", r.Quantization, r.Unexpected)
			}
		})
	}
}

// TestInspectConfigOnly: a config file, or a directory holding only a
// config.json, is reported from the config alone.
func TestInspectConfigOnly(t *testing.T) {
	file := testdataPath(t, "fixtures/configs/qwen1.5-moe-a2.7b.json")
	dir := t.TempDir()
	data, _ := os.ReadFile(file)
	os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644)
	for _, p := range []string{file, dir} {
		r, err := Inspect(p)
		if err != nil {
			t.Fatal(err)
		}
		if r.WeightsRead || r.Tensors != 0 || len(r.DTypes) != 0 || r.Shards.Count != 0 || r.Path != p {
			t.Errorf("%s: config-only report has weight fields: %+v", p, r)
		}
		if math.Abs(float64(r.ParamsTotal)/14.3e9-1) > 0.01 || math.Abs(float64(r.ParamsActive)/2.7e9-1) > 0.01 {
			t.Errorf("%s: params %d / %d, want ≈14.3e9 / 2.7e9", p, r.ParamsTotal, r.ParamsActive)
		}
		want := Report{
			Path: p, Architecture: Qwen2MoE, Class: "Qwen2MoeForCausalLM", Layers: 24, HiddenSize: 2048,
			IntermediateSize: 5632, Heads: 16, KVHeads: 16, HeadDim: 128, AttentionBias: "q/k/v", SlidingWindowLayers: []int{}, VocabSize: 151936, RopeTheta: 1e6,
			RMSNormEps: 1e-6, MaxPositionEmbeddings: 8192, ConfigDType: "bfloat16",
			Experts: &ExpertsReport{Routed: 60, PerToken: 4, Width: 1408, SharedWidth: 5632,
				MoELayers: r.Experts.MoELayers, DenseLayers: []int{}},
			ParamsTotal: r.ParamsTotal, ParamsActive: r.ParamsActive,
			DTypes: map[string]DTypeReport{}, Shards: ShardsReport{Files: []ShardFile{}}, Unexpected: []string{},
		}
		if diff := cmp.Diff(&want, r); diff != "" {
			t.Error(diff)
		}
		if len(r.Experts.MoELayers) != 24 {
			t.Errorf("MoE layers %v", r.Experts.MoELayers)
		}
	}
}

func TestInspectMixedLayers(t *testing.T) {
	dir := t.TempDir()
	m := tinyQwen2MoE()
	m["num_hidden_layers"] = 4
	m["mlp_only_layers"] = []int{0, 3}
	c := mustParseMap(t, m)
	if err := c.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(r.Experts.MoELayers, []int{1, 2}) || !cmp.Equal(r.Experts.DenseLayers, []int{0, 3}) {
		t.Errorf("MoE layers %v, dense %v", r.Experts.MoELayers, r.Experts.DenseLayers)
	}
}

// TestInspectErrors: what is not a checkpoint is an error naming the path;
// a broken checkpoint gives Open's error.
func TestInspectErrors(t *testing.T) {
	empty := t.TempDir()
	broken := rewriteCheckpoint(t, materialized(t, "fixtures/qwen2_dense_tiny/model"), replaceTensor(t, FinalNorm, nil))
	weightsOnly := t.TempDir()
	os.WriteFile(filepath.Join(weightsOnly, "model.safetensors"), []byte("x"), 0o644)
	compressed := t.TempDir()
	copyNonWeights(t, materialized(t, "fixtures/qwen2_dense_tiny/model"), compressed)
	os.WriteFile(filepath.Join(compressed, "model.safetensors.zst"), []byte("x"), 0o644)
	for _, c := range []struct {
		path string
		want string
	}{
		{compressed, "model.safetensors is zstd-compressed"},
		{testdataPath(t, "models/qwen2_moe_a60"), "model-00001-of-00003.safetensors, which is zstd-compressed"},
		{filepath.Join(empty, "nope"), "no such file or directory"},
		{empty, "neither a checkpoint directory nor a config.json"},
		{broken, "missing tensor model.norm.weight"},
		{weightsOnly, "no config.json"},
		{testdataPath(t, "fixtures/README.md"), "not a JSON object"},
	} {
		_, err := Inspect(c.path)
		if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Inspect(%s): %v, want an error naming the path and %q", c.path, err, c.want)
		}
	}
}
