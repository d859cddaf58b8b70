package mlx_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/moeforge/moeforge/export"
	"github.com/moeforge/moeforge/formats/mlx"
	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}

// FuzzOpen feeds arbitrary config.json files and safetensors headers (over
// the data of a real export) to Open: the MLX export of qwen2_moe_tiny (4
// bits, group 32, 8-bit embeddings and routers), one shard. Neither IsDir
// nor Open may panic; a quantized checkpoint Open accepts is one IsDir
// recognizes, and it reads every linear layer and reports.
func FuzzOpen(f *testing.F) {
	src := filepath.Join(fixturetest.Dir(f, "fixtures/qwen2_moe_tiny"), "model")
	ref := filepath.Join(f.TempDir(), "mlx")
	if _, err := export.MLX(context.Background(), src, ref, export.MLXOptions{Bits: 4, GroupSize: 32, EmbeddingBits: 8}); err != nil {
		f.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(ref, "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	shard, err := os.ReadFile(filepath.Join(ref, safetensors.SingleFile))
	if err != nil {
		f.Fatal(err) // a sharded export: the fixture grew
	}
	n := binary.LittleEndian.Uint64(shard)
	header, data := shard[8:8+n], shard[8+n:]
	f.Add(config, header)
	f.Add([]byte(`{"model_type": "qwen2_moe", "quantization": {"group_size": 0, "bits": 4}}`), header)
	f.Add([]byte(`{"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 0, "vocab_size": 1024, "num_attention_heads": 4, "intermediate_size": 128, "quantization": {"group_size": 64, "bits": 3, "model.embed_tokens": false}}`), header)
	dir := f.TempDir() // rewritten by each input: a worker runs one at a time
	f.Fuzz(func(t *testing.T, config, header []byte) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
		file := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		file = append(append(file, header...), data...)
		if err := os.WriteFile(filepath.Join(dir, safetensors.SingleFile), file, 0o644); err != nil {
			t.Fatal(err)
		}
		isDir := mlx.IsDir(dir)
		ck, err := mlx.Open(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		defer ck.Close()
		if !isDir && ck.Quant != nil {
			t.Fatal("opened a quantized MLX directory that IsDir does not recognize")
		}
		for _, l := range ck.Linears() {
			if _, _, err := ck.Linear(l); err != nil {
				t.Fatalf("opened, but linear %s: %v", l.Name, err)
			}
		}
		if _, err := mlx.Report(dir); err != nil {
			t.Fatalf("opened, but Report: %v", err)
		}
	})
}
