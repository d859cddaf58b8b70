package tokenizer

import (
	"encoding/json"
	"slices"
)

// Merges returns the BPE merges in rank order, each as "left right" in the
// byte-level alphabet of tokenizer.json (the form GGUF's
// tokenizer.ggml.merges takes). A pair listed twice appears once, at the
// rank that applies.
func (t *Tokenizer) Merges() []string {
	type entry struct {
		rank int32
		s    string
	}
	es := make([]entry, 0, len(t.model.merges))
	vocabTok := make(map[int]string, len(t.model.vocab))
	for s, id := range t.model.vocab {
		vocabTok[id] = s
	}
	for k, r := range t.model.merges {
		a, b := vocabTok[int(k>>32)], vocabTok[int(uint32(k))]
		es = append(es, entry{r.rank, a + " " + b})
	}
	slices.SortFunc(es, func(x, y entry) int { return int(x.rank - y.rank) })
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.s
	}
	return out
}

// AddedToken is an entry of tokenizer.json's added_tokens.
type AddedToken struct {
	ID         int
	Content    string
	Special    bool
	Normalized bool
}

// AddedTokens returns the added tokens in the order of tokenizer.json.
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, len(t.added))
	for i, a := range t.added {
		out[i] = AddedToken{ID: a.ID, Content: a.Content, Special: a.Special, Normalized: a.Normalized}
	}
	return out
}

// NewQwen2BPE builds the tokenizer of the Qwen2 pipeline (NFC normalizer,
// the Qwen2 split regex, byte-level BPE, ByteLevel decoder) from a
// vocabulary (byte-level token → id), merges in rank order ("left right")
// and the added tokens: what a GGUF file whose tokenizer.ggml.model is
// "gpt2" with pre-tokenizer "qwen2" describes. It goes through Parse, so it
// validates as a tokenizer.json would.
func NewQwen2BPE(vocab map[string]int, merges []string, added []AddedToken) (*Tokenizer, error) {
	type addedJSON struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	doc := map[string]any{
		"normalizer": map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwen2Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model":   map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
	as := make([]addedJSON, len(added))
	for i, a := range added {
		as[i] = addedJSON{ID: a.ID, Content: a.Content, Normalized: a.Normalized, Special: a.Special}
	}
	doc["added_tokens"] = as
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// NewLlamaBPE builds the tokenizer of the Llama 2 / Mistral pipeline
// (normalizer Prepend "▁" then Replace " " → "▁", no pre-tokenizer, BPE
// with byte_fallback over "▁"-marked pieces and <0xXX> byte tokens, the
// Replace/ByteFallback/Fuse/Strip decoder) from a vocabulary (piece → id),
// merges in rank order ("left right"), the unknown piece and the added
// tokens: what a GGUF file whose tokenizer.ggml.model is "llama" describes
// when it also carries the merges. It goes through Parse, so it validates as
// a tokenizer.json would.
func NewLlamaBPE(vocab map[string]int, merges []string, unk string, added []AddedToken) (*Tokenizer, error) {
	type addedJSON struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	model := map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "byte_fallback": true, "fuse_unk": true}
	if unk != "" {
		model["unk_token"] = unk
	}
	doc := map[string]any{
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": model,
	}
	as := make([]addedJSON, len(added))
	for i, a := range added {
		as[i] = addedJSON{ID: a.ID, Content: a.Content, Normalized: a.Normalized, Special: a.Special}
	}
	doc["added_tokens"] = as
	data, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}
