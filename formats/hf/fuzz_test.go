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
