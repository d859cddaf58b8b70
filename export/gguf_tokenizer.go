package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/moeforge/moeforge/formats/gguf"
	"github.com/moeforge/moeforge/formats/hf"
	"github.com/moeforge/moeforge/tokenizer"
	"github.com/moeforge/moeforge/tokenizer/chattemplate"
)

// GGUF token types (gguf-py's TokenType).
const (
	tokenNormal      int32 = 1
	tokenUnknown     int32 = 2
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
	tokenByte        int32 = 6
)

// tokenizerKVs returns the tokenizer.* metadata of the checkpoint in dir:
// byte-level BPE as llama.cpp's "gpt2" model with the "qwen2"
// pre-tokenizer (the only pipeline moeforge's tokenizer accepts), one token
// per embedding row (ids the tokenizer lacks become unused [PADn] tokens, as
// llama.cpp's converter writes them), the merges, the special ids and the
// chat template.
func tokenizerKVs(dir string, c *hf.Config) ([]gguf.KV, error) {
	path := filepath.Join(dir, "tokenizer.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, refuse("%s: no tokenizer.json: a GGUF file carries its tokenizer", dir)
	}
	if err != nil {
		return nil, err
	}
	spm := false
	if sp := sentencePieceSign(raw); sp != "" {
		if why := llamaPipeline(raw); why != "" {
			return nil, refuse("%s: a SentencePiece-style tokenizer (%s) that llama.cpp's \"llama\" tokenizer cannot reproduce: %s", path, sp, why)
		}
		spm = true
	}
	tok, err := tokenizer.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	unk := -1
	if spm {
		var m struct {
			Model struct {
				Unk *string `json:"unk_token"`
			} `json:"model"`
		}
		json.Unmarshal(raw, &m)
		if m.Model.Unk != nil {
			n, ok := tok.TokenID(*m.Model.Unk)
			if !ok {
				return nil, fmt.Errorf("%s: model.unk_token %q is not a token", path, *m.Model.Unk)
			}
			unk = n
		}
	}
	if tok.VocabSize() > c.VocabSize {
		return nil, refuse("%s: the tokenizer has ids up to %d but config vocab_size=%d", path, tok.VocabSize()-1, c.VocabSize)
	}
	added := map[int]tokenizer.AddedToken{}
	for _, a := range tok.AddedTokens() {
		added[a.ID] = a
	}
	tokens := make([]string, c.VocabSize)
	types := make([]int32, c.VocabSize)
	for id := range tokens {
		s, ok := tok.Token(id)
		switch a, isAdded := added[id]; {
		case !ok:
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), tokenUnused
		case spm && id == unk:
			tokens[id], types[id] = s, tokenUnknown
		case isAdded && a.Special:
			tokens[id], types[id] = s, tokenControl
		case isAdded:
			tokens[id], types[id] = s, tokenUserDefined
		case spm && isByteToken(s):
			tokens[id], types[id] = s, tokenByte
		default:
			tokens[id], types[id] = s, tokenNormal
		}
	}
	merges := tok.Merges()
	kvs := []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: "qwen2"},
		{Key: "tokenizer.ggml.tokens", Value: tokens},
		{Key: "tokenizer.ggml.token_type", Value: types},
		{Key: "tokenizer.ggml.merges", Value: merges},
	}
	if spm {
		// llama.cpp's "llama" (SentencePiece) tokenizer ignores the merges;
		// moeforge reads them back to rebuild the BPE exactly.
		kvs = []gguf.KV{
			{Key: "tokenizer.ggml.model", Value: "llama"},
			{Key: "tokenizer.ggml.pre", Value: "default"},
			{Key: "tokenizer.ggml.tokens", Value: tokens},
			{Key: "tokenizer.ggml.scores", Value: mergeScores(tokens, merges)},
			{Key: "tokenizer.ggml.token_type", Value: types},
			{Key: "tokenizer.ggml.merges", Value: merges},
			{Key: "tokenizer.ggml.add_space_prefix", Value: true},
		}
		if unk >= 0 {
			kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(unk)})
		}
	}
	tc, err := readJSONMap(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	id := func(key string) (uint32, bool, error) {
		// tokenizer_config.json names the token ("eos_token"); config.json
		// gives the id ("eos_token_id").
		if raw, ok := tc[key]; ok {
			if name, ok := tokenName(raw); ok {
				n, found := tok.TokenID(name)
				if !found {
					return 0, false, fmt.Errorf("%s: tokenizer_config.json %s %q is not a token", dir, key, name)
				}
				return uint32(n), true, nil
			}
		}
		n, ok := configID(c, key+"_id")
		return n, ok, nil
	}
	// bos comes from config.json first (Qwen's tokenizer_config.json has no
	// bos_token, and llama.cpp's gpt2 default would be 11); eos and pad
	// prefer tokenizer_config.json.
	for _, k := range []struct {
		hfKey, gkey string
		configFirst bool
	}{
		{"bos_token", "tokenizer.ggml.bos_token_id", !spm},
		{"eos_token", "tokenizer.ggml.eos_token_id", false},
		{"pad_token", "tokenizer.ggml.padding_token_id", false},
	} {
		n, ok := configID(c, k.hfKey+"_id")
		if !ok || !k.configFirst {
			m, found, err := id(k.hfKey)
			if err != nil {
				return nil, err
			}
			if found {
				n, ok = m, true
			}
		}
		if ok {
			kvs = append(kvs, gguf.KV{Key: k.gkey, Value: n})
		}
	}
	for _, k := range []string{"add_bos_token", "add_eos_token"} {
		// LlamaTokenizer's defaults: a BOS, no EOS.
		v := spm && k == "add_bos_token"
		if raw, ok := tc[k]; ok {
			json.Unmarshal(raw, &v)
		}
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml." + k, Value: v})
	}
	tmpl, err := chatTemplate(dir)
	if err != nil {
		return nil, err
	}
	if tmpl != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: tmpl})
	}
	return kvs, nil
}

// sentencePieceSign names what marks a tokenizer.json as SentencePiece-style
// (Mistral/Mixtral/Llama), or returns "".
func sentencePieceSign(raw []byte) string {
	var f struct {
		PreTokenizer json.RawMessage `json:"pre_tokenizer"`
		Normalizer   json.RawMessage `json:"normalizer"`
		Decoder      json.RawMessage `json:"decoder"`
		Model        struct {
			ByteFallback bool `json:"byte_fallback"`
		} `json:"model"`
	}
	if json.Unmarshal(raw, &f) != nil {
		return ""
	}
	switch {
	case f.Model.ByteFallback:
		return "model.byte_fallback=true"
	case strings.Contains(string(f.PreTokenizer), `"Metaspace"`):
		return "a Metaspace pre_tokenizer"
	case strings.Contains(string(f.Normalizer), `"Prepend"`) || strings.Contains(string(f.Normalizer), `"Replace"`):
		return "a Prepend/Replace normalizer"
	case strings.Contains(string(f.Decoder), `"ByteFallback"`) || strings.Contains(string(f.Decoder), `"Metaspace"`):
		return "a ByteFallback/Metaspace decoder"
	}
	return ""
}

// llamaPipeline returns "" when tokenizer.json is exactly the Llama 2 /
// Mistral pipeline (Prepend "▁" + Replace " " → "▁" normalizer, no
// pre-tokenizer, BPE with byte_fallback, the Replace/ByteFallback/Fuse/Strip
// decoder) — the one llama.cpp's SentencePiece tokenizer reproduces, since
// it prefixes "▁" to every text run, also after a special token, as the
// Prepend normalizer does — else what differs. A Metaspace pre-tokenizer
// with prepend_scheme "first" prefixes only the start of the text, which
// llama.cpp cannot express.
func llamaPipeline(raw []byte) string {
	var f struct {
		Normalizer   any `json:"normalizer"`
		PreTokenizer any `json:"pre_tokenizer"`
		Decoder      any `json:"decoder"`
		Model        struct {
			Type           string  `json:"type"`
			ByteFallback   bool    `json:"byte_fallback"`
			ContinuingPref *string `json:"continuing_subword_prefix"`
			EndOfWord      *string `json:"end_of_word_suffix"`
			IgnoreMerges   bool    `json:"ignore_merges"`
			Dropout        any     `json:"dropout"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return err.Error()
	}
	var want struct{ Normalizer, Decoder any }
	json.Unmarshal([]byte(`{"Normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
		"Decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}}`), &want)
	m := f.Model
	switch {
	case m.Type != "BPE" || !m.ByteFallback:
		return fmt.Sprintf("model type %q byte_fallback=%v, want BPE with byte_fallback", m.Type, m.ByteFallback)
	case m.ContinuingPref != nil && *m.ContinuingPref != "", m.EndOfWord != nil && *m.EndOfWord != "":
		return "model has a continuing_subword_prefix or end_of_word_suffix"
	case m.IgnoreMerges:
		return "model.ignore_merges=true"
	case m.Dropout != nil:
		return "model.dropout is set"
	case f.PreTokenizer != nil:
		return "a pre_tokenizer is set (the Llama pipeline has none; Metaspace with prepend_scheme \"first\" differs from llama.cpp after special tokens)"
	case !reflect.DeepEqual(f.Normalizer, want.Normalizer):
		return "the normalizer is not Prepend \"▁\" + Replace \" \" → \"▁\""
	case !reflect.DeepEqual(f.Decoder, want.Decoder):
		return "the decoder is not Replace \"▁\" → \" \", ByteFallback, Fuse, Strip(1, 0)"
	}
	return ""
}

// isByteToken reports whether s is a byte_fallback token, "<0xXX>".
func isByteToken(s string) bool {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return false
	}
	for _, c := range s[3:5] {
		if !strings.ContainsRune("0123456789ABCDEF", c) {
			return false
		}
	}
	return true
}

// mergeScores derives the tokenizer.ggml.scores llama.cpp's SentencePiece
// tokenizer merges by, from the BPE merges: a piece that merge rank r makes
// scores −r (its first merge, the one BPE applies), so llama.cpp's
// highest-score-first merging follows the merge ranks; every other piece
// scores below all of them. (llama.cpp's own converter writes −1000 for
// every piece of a tokenizer.json without tokenizer.model — a placeholder
// under which its tokenizer merges left to right instead.)
func mergeScores(tokens, merges []string) []float32 {
	id := make(map[string]int, len(tokens))
	for i, s := range tokens {
		if _, dup := id[s]; !dup {
			id[s] = i
		}
	}
	scores := make([]float32, len(tokens))
	set := make([]bool, len(tokens))
	for r, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		if i, ok := id[a+b]; ok && !set[i] {
			scores[i], set[i] = -float32(r), true
		}
	}
	for i := range scores {
		if !set[i] {
			scores[i] = -float32(len(merges) + i)
		}
	}
	return scores
}

func readJSONMap(path string) (map[string]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// tokenName reads a token given as a string or as {"content": ...}.
func tokenName(raw json.RawMessage) (string, bool) {
	if strings.TrimSpace(string(raw)) == "null" {
		return "", false // "pad_token": null, as Mistral's file has
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var o struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Content != nil {
		return *o.Content, true
	}
	return "", false
}

// chatTemplate returns the checkpoint's chat template by the rule every
// command uses (chattemplate.Source: chat_template.jinja first, as
// transformers prefers it, else tokenizer_config.json's); "" when there is
// none. The text is copied, not compiled.
func chatTemplate(dir string) (string, error) {
	src, _, err := chattemplate.Source(dir)
	if errors.Is(err, chattemplate.ErrNoTemplate) {
		return "", nil
	}
	return src, err
}

// configID reads a token id key of config.json (an id, or a list whose
// first entry is taken), within the vocabulary.
func configID(c *hf.Config, key string) (uint32, bool) {
	raw, ok := c.Raw(key)
	if !ok {
		return 0, false
	}
	var n int
	if json.Unmarshal(raw, &n) == nil && n >= 0 && n < c.VocabSize {
		return uint32(n), true
	}
	var ns []int
	if json.Unmarshal(raw, &ns) == nil && len(ns) > 0 && ns[0] >= 0 && ns[0] < c.VocabSize {
		return uint32(ns[0]), true
	}
	return 0, false
}
