package hf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseConfig feeds arbitrary bytes to ParseConfig. It must never panic,
// and a config it accepts must survive Marshal and parse back to the same
// typed values.
func FuzzParseConfig(f *testing.F) {
	root := "../../testdata"
	for _, rel := range append([]string{"fixtures/configs/qwen1.5-moe-a2.7b.json", "fixtures/configs/qwen3-30b-a3b.json"}, checkpointConfigs()...) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"model_type":"qwen2","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4,"head_dim":null}`))
	f.Add([]byte(`{"model_type":"mixtral","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4,"num_local_experts":2,"num_experts_per_tok":1}`))
	f.Add([]byte(`{"model_type":"qwen2_moe","hidden_size":8,"intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,"vocab_size":4,"num_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4,"mlp_only_layers":[1],"quantization_config":{"quant_method":"gptq","bits":4,"group_size":-1,"x":[1]}}`))
	f.Add([]byte(`{"model_type":"qwen3","hidden_size":8,"intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,"vocab_size":4,"use_sliding_window":true,"sliding_window":3,"layer_types":["full_attention","sliding_attention"],"attention_bias":true}`))
	f.Add([]byte(`{"model_type":"qwen3_moe","hidden_size":8,"intermediate_size":8,"num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"vocab_size":4,"num_local_experts":2,"num_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4,"mlp_only_layers":[0],"norm_topk_prob":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("Marshal output rejected: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back, cmpopts.IgnoreUnexported(Config{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the config:\n%s", diff)
		}
	})
}

func checkpointConfigs() []string {
	var l []string
	for _, ck := range checkpoints {
		l = append(l, filepath.Join(ck, "config.json"))
	}
	return l
}

// FuzzOpen feeds arbitrary config.json, model.safetensors.index.json and
// quantize_config.json files (an empty one: none) to Open over the 14 real
// shards of qwen2_moe_tiny_sharded. It must never panic, and a checkpoint
// it opens resolves every linear layer its config describes.
func FuzzOpen(f *testing.F) {
	src := materialized(f, "fixtures/qwen2_moe_tiny_sharded/model")
	shards, err := filepath.Glob(filepath.Join(src, "*.safetensors"))
	if err != nil || len(shards) == 0 {
		f.Fatalf("no shards in %s: %v", src, err)
	}
	dir := f.TempDir()
	for _, s := range shards {
		if err := os.Symlink(s, filepath.Join(dir, filepath.Base(s))); err != nil {
			f.Fatal(err)
		}
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	config, index := read("config.json"), read("model.safetensors.index.json")
	f.Add(config, index, []byte{})
	f.Add(config, index, []byte(`{"bits": 4, "group_size": 32, "sym": true, "checkpoint_format": "gptq_v2"}`))
	f.Add([]byte(`{"model_type":"qwen2_moe","hidden_size":64,"intermediate_size":128,"num_hidden_layers":3,"num_attention_heads":4,"vocab_size":1024,"num_experts":16,"num_experts_per_tok":4,"moe_intermediate_size":32,"quantization_config":{"quant_method":"gptq","bits":4,"group_size":32,"sym":true}}`),
		index, []byte(`{"bits": 8, "group_size": 32, "sym": true}`))
	f.Fuzz(func(t *testing.T, config, index, qcfg []byte) {
		for name, data := range map[string][]byte{"config.json": config, "model.safetensors.index.json": index, "quantize_config.json": qcfg} {
			p := filepath.Join(dir, name)
			if len(data) == 0 && name == "quantize_config.json" {
				os.Remove(p)
				continue
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ck, err := Open(dir)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		defer ck.Close()
		for _, l := range ck.linears() {
			if _, err := ck.Linear(l); err != nil {
				t.Fatalf("opened, but linear %s: %v", l.Name, err)
			}
		}
	})
}
