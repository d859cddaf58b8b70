package model_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/model"
)

// greedyWithoutCache is greedy decoding the slow way: the whole sequence is
// run through the model again for every new token.
func greedyWithoutCache(t *testing.T, m *model.Model, prompt []int, n int) []int {
	t.Helper()
	V := m.Config.VocabSize
	seq := append([]int(nil), prompt...)
	var out []int
	for len(out) < n {
		logits := logitsOf(t, m, [][]int{seq})
		next := argmaxF(logits[(len(seq)-1)*V:])
		out = append(out, next)
		seq = append(seq, next)
	}
	return out
}

// TestGenerateMatchesFullForward: greedy decoding with the KV cache picks
// the tokens that re-running the full sequence picks, for every
// architecture, and reports each one through emit as it goes.
func TestGenerateMatchesFullForward(t *testing.T) {
	for _, name := range []string{"qwen2_moe_tiny", "mixtral_tiny", "qwen2_dense_tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fixturetest.Dir(t, "fixtures/"+name), "model")
			m := loadModel(t, dir)
			prompt := []int{39, 421, 78, 897, 11}
			want := greedyWithoutCache(t, m, prompt, 24)
			var emitted []int
			g, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxNewTokens: 24},
				func(id int) error { emitted = append(emitted, id); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, g.IDs); diff != "" {
				t.Errorf("generated ids (-full forward +cached):\n%s", diff)
			}
			if diff := cmp.Diff(g.IDs, emitted); diff != "" {
				t.Errorf("emitted ids differ from the result (-result +emitted):\n%s", diff)
			}
			if g.Stop != model.StopMaxNewTokens {
				t.Errorf("stop reason %q, want %q", g.Stop, model.StopMaxNewTokens)
			}
		})
	}
}

func TestGenerateStops(t *testing.T) {
	m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	prompt := []int{5, 6, 7}
	free, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxNewTokens: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The third token generated without EOS becomes the EOS: generation
	// stops right after it, and it is part of the result.
	eos := free.IDs[2]
	stopAt := 2
	for i, id := range free.IDs[:2] {
		if id == eos {
			stopAt = i
			break
		}
	}
	g, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxNewTokens: 10, EOS: []int{9999, eos}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(free.IDs[:stopAt+1], g.IDs); diff != "" || g.Stop != model.StopEOS {
		t.Errorf("with EOS %d: ids %v stop %q, want %v stop eos", eos, g.IDs, g.Stop, free.IDs[:stopAt+1])
	}

	// Stopping at max_position_embeddings (16): a 10-token prompt leaves
	// room for 7 new tokens (the last one predicted at position 15).
	short := qwenMoEConfig(map[string]any{"max_position_embeddings": 16})
	ms := loadModel(t, randomCheckpoint(t, short, 1))
	g, err = ms.Generate(context.Background(), make([]int, 10), model.GenerateOptions{MaxNewTokens: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.IDs) != 7 || g.Stop != model.StopMaxPosition {
		t.Errorf("at max_position_embeddings: %d tokens, stop %q; want 7, %q", len(g.IDs), g.Stop, model.StopMaxPosition)
	}

	// emit's error stops generation and is returned with the tokens so far.
	stop := errors.New("enough")
	g, err = m.Generate(context.Background(), prompt, model.GenerateOptions{MaxNewTokens: 10},
		func(id int) error {
			if id == free.IDs[1] {
				return stop
			}
			return nil
		})
	if !errors.Is(err, stop) || len(g.IDs) == 0 || g.IDs[len(g.IDs)-1] != free.IDs[1] {
		t.Errorf("emit error: got %v with %v", err, g.IDs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Generate(ctx, prompt, model.GenerateOptions{MaxNewTokens: 3}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}

func TestGenerateBadInput(t *testing.T) {
	m := loadModel(t, filepath.Join(fixturetest.Dir(t, "fixtures/qwen2_moe_tiny"), "model"))
	for _, tc := range []struct {
		name   string
		prompt []int
		opt    model.GenerateOptions
		want   string
	}{
		{"empty prompt", nil, model.GenerateOptions{MaxNewTokens: 4}, "prompt has no tokens"},
		{"no new tokens", []int{1}, model.GenerateOptions{}, "max new tokens 0 must be positive"},
		{"prompt too long", make([]int, 513), model.GenerateOptions{MaxNewTokens: 4}, "513 tokens, more than max_position_embeddings=512"},
		{"id out of range", []int{1, 5000}, model.GenerateOptions{MaxNewTokens: 4}, "token id 5000 out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Generate(context.Background(), tc.prompt, tc.opt, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestEOSTokens(t *testing.T) {
	cfg := func(eos string) *hf.Config {
		raw := `{"model_type":"qwen2","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,` +
			`"num_attention_heads":2,"vocab_size":10` + eos + `}`
		c, err := hf.ParseConfig([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name, config, generation string // generation "" = no generation_config.json
		want                     []int
		err                      string
	}{
		{"generation_config wins", `,"eos_token_id":0`, `{"eos_token_id": [1021, 1023]}`, []int{1021, 1023}, ""},
		{"generation_config one id", ``, `{"eos_token_id": 7}`, []int{7}, ""},
		{"config only", `,"eos_token_id":3`, ``, []int{3}, ""},
		{"generation_config without eos", `,"eos_token_id":[3,4]`, `{"bos_token_id": 1}`, []int{3, 4}, ""},
		{"null", `,"eos_token_id":null`, `{"eos_token_id": null}`, nil, ""},
		{"none", ``, ``, nil, ""},
		{"malformed", ``, `{"eos_token_id": "x"}`, nil, "generation_config.json: eos_token_id"},
		{"not JSON", ``, `{`, nil, "generation_config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.generation != "" {
				if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(tc.generation), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := model.EOSTokens(dir, cfg(tc.config))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("eos ids (-want +got):\n%s", diff)
			}
		})
	}
}
