package model_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/half"
)

// tensorData is a tensor to write: float32 values stored as dtype.
type tensorData struct {
	name  string
	shape []int
	data  []float32
}

// encode returns the little-endian bytes of v in dtype (F32, F16 or BF16).
func encode(tb testing.TB, v []float32, dtype safetensors.DType) []byte {
	switch dtype {
	case safetensors.F32:
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	case safetensors.F16, safetensors.BF16:
		b := make([]byte, 2*len(v))
		for i, x := range v {
			h := half.F32ToF16(x)
			if dtype == safetensors.BF16 {
				h = half.F32ToBF16(x)
			}
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
		return b
	}
	tb.Fatalf("encode: unsupported dtype %s", dtype)
	return nil
}

// writeCheckpoint writes config.json (cfg, a config.json object) and the
// tensors, in dtype, as a checkpoint in dir (sharded when maxShard > 0).
func writeCheckpoint(tb testing.TB, dir string, cfg map[string]any, tensors []tensorData, dtype safetensors.DType, maxShard int64) {
	tb.Helper()
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	plan := make([]safetensors.Info, len(tensors))
	for i, t := range tensors {
		plan[i] = safetensors.Info{Name: t.name, DType: dtype, Shape: t.shape}
	}
	w, err := safetensors.NewDirWriter(dir, plan, safetensors.WriterOptions{MaxShardSize: maxShard})
	if err != nil {
		tb.Fatal(err)
	}
	for _, t := range tensors {
		if err := w.Write(t.name, encode(tb, t.data, dtype)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// randomCheckpoint writes a checkpoint of the config cfg with random F32
// weights (seeded) into a new temporary directory and returns it. Matrices
// are drawn with a scale that keeps activations of order one and routing
// decisions away from ties; norm weights are 1 ± 0.2, biases ±0.2.
func randomCheckpoint(t testing.TB, cfg map[string]any, seed uint64) string {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := hf.ParseConfig(raw)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var tensors []tensorData
	for _, spec := range c.Tensors() {
		n := 1
		for _, d := range spec.Shape {
			n *= d
		}
		v := make([]float32, n)
		switch {
		case len(spec.Shape) == 1 && isNorm(spec.Name):
			for i := range v {
				v[i] = float32(1 + 0.4*(rng.Float64()-0.5))
			}
		case len(spec.Shape) == 1: // bias
			for i := range v {
				v[i] = float32(0.4 * (rng.Float64() - 0.5))
			}
		default:
			scale := 1.5 / math.Sqrt(float64(spec.Shape[1]))
			if spec.Name == hf.EmbedTokens {
				scale = 1
			}
			for i := range v {
				v[i] = float32(scale * rng.NormFloat64())
			}
		}
		tensors = append(tensors, tensorData{spec.Name, spec.Shape, v})
	}
	dir := filepath.Join(t.TempDir(), "model")
	writeCheckpoint(t, dir, cfg, tensors, safetensors.F32, 0)
	return dir
}

func isNorm(name string) bool {
	return name == hf.FinalNorm || strings.HasSuffix(name, "layernorm.weight") || strings.HasSuffix(name, "_norm.weight")
}

// readTensors reads every tensor of a checkpoint directory as float32, in
// the files' order.
func readTensors(tb testing.TB, dir string) []tensorData {
	tb.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer set.Close()
	var out []tensorData
	for _, name := range set.Names() {
		tt, _ := set.Tensor(name)
		v, err := tt.Float32()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, tensorData{name, tt.Shape, v})
	}
	return out
}

// readConfigMap reads dir/config.json as a generic JSON object.
func readConfigMap(tb testing.TB, dir string) map[string]any {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// copyFile copies one file (tokenizer, generation config) between checkpoints.
func copyFile(tb testing.TB, src, dst string) {
	tb.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// relDiff returns max|a−b| / max|b|.
func relDiff(a, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

// relDiff64 returns max|a−b| / max|b| against a float64 reference.
func relDiff64(a []float32, b []float64) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-b[i]))
		m = math.Max(m, math.Abs(b[i]))
	}
	return d / m
}
