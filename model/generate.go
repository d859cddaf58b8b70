package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moeforge/moeforge/formats/hf"
)

// StopReason says why Generate stopped.
type StopReason string

// The reasons generation stops.
const (
	StopEOS          StopReason = "eos"            // the model produced an end-of-sequence token
	StopMaxNewTokens StopReason = "max_new_tokens" // the requested number of tokens was produced
	StopMaxPosition  StopReason = "max_position"   // the sequence reached max_position_embeddings
)

// GenerateOptions configures decoding.
type GenerateOptions struct {
	// MaxNewTokens caps the number of generated tokens (the EOS token
	// included when it ends generation). It must be positive.
	MaxNewTokens int
	// EOS lists the token ids that end generation; nil means none.
	EOS []int
	// Sampler picks each token (see SamplingOptions); nil means greedy.
	// Generate lets it observe the prompt first.
	Sampler *Sampler
}

// Generation is the result of Generate.
type Generation struct {
	// IDs are the generated tokens, the final EOS token included when
	// generation stopped on one (Stop == StopEOS).
	IDs  []int
	Stop StopReason
}

// Generate extends prompt one token at a time — greedily (argmax of the
// logits, the lowest id on a tie) unless opt.Sampler says otherwise — keeping the keys and values of past positions in
// a KV cache so that each step runs the model on one token only. The prompt
// is processed in one forward pass. emit, when not nil, is called with every
// generated token as soon as it is chosen (EOS included); an error from emit
// or a cancelled ctx stops generation and is returned with what was
// generated so far.
func (m *Model) Generate(ctx context.Context, prompt []int, opt GenerateOptions, emit func(id int) error) (Generation, error) {
	var g Generation
	if len(prompt) == 0 {
		return g, errors.New("generate: the prompt has no tokens")
	}
	if opt.MaxNewTokens <= 0 {
		return g, fmt.Errorf("generate: max new tokens %d must be positive", opt.MaxNewTokens)
	}
	maxPos := m.Config.MaxPositionEmbeddings
	if maxPos > 0 && len(prompt) > maxPos {
		return g, fmt.Errorf("generate: the prompt has %d tokens, more than max_position_embeddings=%d", len(prompt), maxPos)
	}
	eos := map[int]bool{}
	for _, id := range opt.EOS {
		eos[id] = true
	}
	cache := m.NewKVCache()
	input := prompt
	if opt.Sampler != nil {
		opt.Sampler.Observe(prompt...)
	}
	for {
		logits, err := m.lastLogits(ctx, input, cache)
		if err != nil {
			return g, err
		}
		var next int
		if opt.Sampler != nil {
			next = opt.Sampler.Sample(logits)
		} else {
			next = argmax(logits)
		}
		g.IDs = append(g.IDs, next)
		if emit != nil {
			if err := emit(next); err != nil {
				return g, err
			}
		}
		switch {
		case eos[next]:
			g.Stop = StopEOS
			return g, nil
		case len(g.IDs) >= opt.MaxNewTokens:
			g.Stop = StopMaxNewTokens
			return g, nil
		case maxPos > 0 && cache.Len >= maxPos:
			// next would sit at position cache.Len, beyond the model's range.
			g.Stop = StopMaxPosition
			return g, nil
		}
		input = []int{next}
	}
}

// lastLogits runs the tokens through the model after the cache's content and
// returns the last position's logits.
func (m *Model) lastLogits(ctx context.Context, tokens []int, cache *KVCache) ([]float32, error) {
	out, err := m.StepLogits(ctx, [][]int{tokens}, []*KVCache{cache})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// argmax returns the index of the largest value, the lowest on a tie.
func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// EOSTokens returns the end-of-sequence token ids of the checkpoint in dir:
// eos_token_id from generation_config.json when the file sets it (as
// transformers' generate uses it), else from config.json. The key may hold
// one id or a list; nil means the checkpoint names none.
func EOSTokens(dir string, c *hf.Config) ([]int, error) {
	path, data, err := readGenerationConfig(dir)
	if err == nil {
		var gc map[string]json.RawMessage
		if err := json.Unmarshal(data, &gc); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if raw, ok := gc["eos_token_id"]; ok && string(raw) != "null" {
			ids, err := parseIDs(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: eos_token_id: %v", path, err)
			}
			return ids, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if raw, ok := c.Raw("eos_token_id"); ok && string(raw) != "null" {
		ids, err := parseIDs(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: eos_token_id: %v", filepath.Join(dir, "config.json"), err)
		}
		return ids, nil
	}
	return nil, nil
}

// readGenerationConfig reads generation_config.json of the model at dir.
// A model without one — a checkpoint that lacks it, or a single-file model
// (GGUF), whose config carries what it needs — gives an error matching
// os.ErrNotExist.
func readGenerationConfig(dir string) (path string, data []byte, err error) {
	path = filepath.Join(dir, "generation_config.json")
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return path, nil, fmt.Errorf("%s: a single-file model has no generation_config.json: %w", dir, os.ErrNotExist)
	}
	data, err = os.ReadFile(path)
	return path, data, err
}

// parseIDs reads a token id or a list of them.
func parseIDs(raw json.RawMessage) ([]int, error) {
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("%s is neither a token id nor a list of them", raw)
	}
	return many, nil
}
