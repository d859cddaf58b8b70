package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// fileJSON is the part of tokenizer.json that matters for encoding and
// decoding. post_processor, truncation and padding are ignored: Encode adds
// no template tokens and never truncates or pads.
type fileJSON struct {
	AddedTokens  []addedToken    `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        json.RawMessage `json:"model"`
	Decoder      json.RawMessage `json:"decoder"`
}

// component is the common shape of normalizers, pre-tokenizers and
// decoders: a type tag and, for Sequence, the list of its members.
type component struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`

	// Split
	Pattern  *splitPattern `json:"pattern"`
	Behavior string        `json:"behavior"`
	Invert   bool          `json:"invert"`

	// ByteLevel
	AddPrefixSpace bool  `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
}

type splitPattern struct {
	Regex  *string `json:"Regex"`
	String *string `json:"String"`
}

type bpeJSON struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]int    `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
}

// maxID bounds token ids so that a corrupt file cannot make Parse allocate
// without limit. Real vocabularies are far below it.
const maxID = 1 << 24

// Parse reads a tokenizer from the contents of a tokenizer.json file.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t := &Tokenizer{}
	var err error
	if t.nfc, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if err := parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if t.byteLevelDecoder, err = parseDecoder(f.Decoder); err != nil {
		return nil, err
	}
	if err := t.parseModel(f.Model); err != nil {
		return nil, err
	}
	if err := t.setAdded(f.AddedTokens); err != nil {
		return nil, err
	}
	return t, nil
}

func isNull(raw json.RawMessage) bool {
	return len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func parseComponent(what string, raw json.RawMessage) (component, error) {
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("tokenizer.json: %s: %w", what, err)
	}
	return c, nil
}

// parseNormalizer accepts no normalizer, NFC, or a Sequence of those.
func parseNormalizer(raw json.RawMessage) (nfc bool, err error) {
	if isNull(raw) {
		return false, nil
	}
	c, err := parseComponent("normalizer", raw)
	if err != nil {
		return false, err
	}
	switch c.Type {
	case "NFC":
		return true, nil
	case "Sequence":
		for _, sub := range c.Normalizers {
			n, err := parseNormalizer(sub)
			if err != nil {
				return false, err
			}
			nfc = nfc || n
		}
		return nfc, nil
	}
	return false, fmt.Errorf("tokenizer.json: normalizer %q is not supported (supported: NFC)", c.Type)
}

// parsePreTokenizer accepts exactly the Qwen2 pipeline: Split with the
// Qwen2 pattern (Isolated), then ByteLevel without its own regex and
// without a prefix space.
func parsePreTokenizer(raw json.RawMessage) error {
	const want = "the Qwen2 pipeline: Sequence[Split(Qwen2 pattern, Isolated), ByteLevel(use_regex=false)]"
	if isNull(raw) {
		return fmt.Errorf("tokenizer.json: no pre_tokenizer; supported is %s", want)
	}
	var steps []component
	var flatten func(raw json.RawMessage) error
	flatten = func(raw json.RawMessage) error {
		c, err := parseComponent("pre_tokenizer", raw)
		if err != nil {
			return err
		}
		if c.Type == "Sequence" {
			for _, sub := range c.PreTokenizers {
				if err := flatten(sub); err != nil {
					return err
				}
			}
			return nil
		}
		steps = append(steps, c)
		return nil
	}
	if err := flatten(raw); err != nil {
		return err
	}
	for _, s := range steps {
		switch s.Type {
		case "Split", "ByteLevel":
		default:
			return fmt.Errorf("tokenizer.json: pre-tokenizer %q is not supported; supported is %s", s.Type, want)
		}
	}
	if len(steps) != 2 || steps[0].Type != "Split" || steps[1].Type != "ByteLevel" {
		names := make([]string, len(steps))
		for i, s := range steps {
			names[i] = s.Type
		}
		return fmt.Errorf("tokenizer.json: pre-tokenizer sequence [%s] is not supported; supported is %s", strings.Join(names, ", "), want)
	}
	split, bl := steps[0], steps[1]
	switch {
	case split.Pattern == nil || (split.Pattern.Regex == nil && split.Pattern.String == nil):
		return fmt.Errorf("tokenizer.json: Split pre-tokenizer without a pattern")
	case split.Pattern.Regex == nil:
		return fmt.Errorf("tokenizer.json: Split pre-tokenizer with String pattern %q is not supported; only the Qwen2 regex is", *split.Pattern.String)
	case *split.Pattern.Regex != qwen2Pattern:
		return fmt.Errorf("tokenizer.json: Split pre-tokenizer regex %q is not supported; only the Qwen2 pattern %q is", *split.Pattern.Regex, qwen2Pattern)
	case split.Behavior != "Isolated":
		return fmt.Errorf("tokenizer.json: Split pre-tokenizer behavior %q is not supported (supported: Isolated)", split.Behavior)
	case split.Invert:
		return fmt.Errorf("tokenizer.json: Split pre-tokenizer with invert=true is not supported")
	case bl.AddPrefixSpace:
		return fmt.Errorf("tokenizer.json: ByteLevel pre-tokenizer with add_prefix_space=true is not supported")
	case bl.UseRegex == nil || *bl.UseRegex:
		return fmt.Errorf("tokenizer.json: ByteLevel pre-tokenizer with use_regex=true (the GPT-2 regex) is not supported")
	}
	return nil
}

// parseDecoder accepts ByteLevel (or a Sequence of only ByteLevel) and no
// decoder at all.
func parseDecoder(raw json.RawMessage) (byteLevel bool, err error) {
	if isNull(raw) {
		return false, nil
	}
	c, err := parseComponent("decoder", raw)
	if err != nil {
		return false, err
	}
	switch c.Type {
	case "ByteLevel":
		return true, nil
	case "Sequence":
		if len(c.Decoders) == 0 {
			return false, fmt.Errorf("tokenizer.json: empty decoder Sequence is not supported")
		}
		for _, sub := range c.Decoders {
			d, err := parseComponent("decoder", sub)
			if err != nil {
				return false, err
			}
			if d.Type != "ByteLevel" {
				return false, fmt.Errorf("tokenizer.json: decoder %q is not supported (supported: ByteLevel)", d.Type)
			}
		}
		return true, nil
	}
	return false, fmt.Errorf("tokenizer.json: decoder %q is not supported (supported: ByteLevel)", c.Type)
}

func (t *Tokenizer) parseModel(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("tokenizer.json: no model")
	}
	var m bpeJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		var c component
		if json.Unmarshal(raw, &c) == nil && c.Type != "" && c.Type != "BPE" {
			return fmt.Errorf("tokenizer.json: model %q is not supported (supported: BPE)", c.Type)
		}
		return fmt.Errorf("tokenizer.json: model: %w", err)
	}
	switch {
	case m.Type != "" && m.Type != "BPE":
		return fmt.Errorf("tokenizer.json: model %q is not supported (supported: BPE)", m.Type)
	case m.Type == "" && m.Merges == nil:
		return fmt.Errorf("tokenizer.json: model has no type and no merges; only BPE is supported")
	case m.Dropout != nil && *m.Dropout != 0:
		return fmt.Errorf("tokenizer.json: BPE dropout %g is not supported", *m.Dropout)
	case m.ByteFallback:
		return fmt.Errorf("tokenizer.json: BPE byte_fallback is not supported")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return fmt.Errorf("tokenizer.json: BPE continuing_subword_prefix %q is not supported", *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return fmt.Errorf("tokenizer.json: BPE end_of_word_suffix %q is not supported", *m.EndOfWordSuffix)
	}

	bm := &t.model
	bm.vocab = make(map[string]int, len(m.Vocab))
	maxSeen := -1
	for tok, id := range m.Vocab {
		if id < 0 || id >= maxID {
			return fmt.Errorf("tokenizer.json: vocab: token %q has id %d, outside [0, %d)", tok, id, maxID)
		}
		bm.vocab[tok] = id
		maxSeen = max(maxSeen, id)
	}
	bm.unkID = -1
	if m.UnkToken != nil {
		id, ok := bm.vocab[*m.UnkToken]
		if !ok {
			return fmt.Errorf("tokenizer.json: BPE unk_token %q is not in the vocab", *m.UnkToken)
		}
		bm.unkID = int32(id)
	}
	bm.fuseUnk = m.FuseUnk
	bm.ignoreMerges = m.IgnoreMerges
	for b := 0; b < 256; b++ {
		bm.byteID[b] = -1
		if id, ok := bm.vocab[string(byteToRune[b])]; ok {
			bm.byteID[b] = int32(id)
		}
	}

	bm.merges = make(map[uint64]mergeRule, len(m.Merges))
	for rank, raw := range m.Merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return fmt.Errorf("tokenizer.json: merges[%d]: %w", rank, err)
		}
		aID, ok := bm.vocab[a]
		if !ok {
			return fmt.Errorf("tokenizer.json: merges[%d]: token %q is not in the vocab", rank, a)
		}
		bID, ok := bm.vocab[b]
		if !ok {
			return fmt.Errorf("tokenizer.json: merges[%d]: token %q is not in the vocab", rank, b)
		}
		newID, ok := bm.vocab[a+b]
		if !ok {
			return fmt.Errorf("tokenizer.json: merges[%d]: merged token %q is not in the vocab", rank, a+b)
		}
		// A repeated pair keeps its last rank, as in Hugging Face's merge map.
		bm.merges[pairKey(int32(aID), int32(bID))] = mergeRule{rank: int32(rank), id: int32(newID)}
	}

	// The id → token table. Its size is bounded by the number of entries so
	// that a few bytes of JSON cannot claim gigabytes.
	n := maxSeen + 1
	if n > 4*len(m.Vocab)+1024 {
		return fmt.Errorf("tokenizer.json: vocab ids are too sparse (max id %d for %d tokens)", maxSeen, len(m.Vocab))
	}
	t.tokens = make([]string, n)
	t.has = make([]bool, n)
	for tok, id := range bm.vocab {
		if t.has[id] {
			other := t.tokens[id]
			if other > tok {
				other, tok = tok, other
			}
			return fmt.Errorf("tokenizer.json: vocab: tokens %q and %q share id %d", other, tok, id)
		}
		t.tokens[id], t.has[id] = tok, true
	}
	return nil
}

// parseMerge reads one merge, either "a b" or ["a", "b"].
func parseMerge(raw json.RawMessage) (a, b string, err error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		a, b, ok := strings.Cut(s, " ")
		if !ok {
			return "", "", fmt.Errorf("%q is not two tokens separated by a space", s)
		}
		return a, b, nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", "", fmt.Errorf("%s is neither \"a b\" nor [\"a\", \"b\"]", truncate(string(raw), 60))
	}
	return pair[0], pair[1], nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// setAdded registers the added tokens and builds the decoding table.
func (t *Tokenizer) setAdded(added []addedToken) error {
	t.addedIDs = make(map[string]int, len(added))
	var raw, normd []addedToken
	var rawPat, normPat []string
	maxSeen := len(t.tokens) - 1
	for _, a := range added {
		if a.ID < 0 || a.ID >= maxID {
			return fmt.Errorf("tokenizer.json: added token %q has id %d, outside [0, %d)", a.Content, a.ID, maxID)
		}
		maxSeen = max(maxSeen, a.ID)
		t.addedIDs[a.Content] = a.ID
		if a.Normalized {
			// Matched after normalization, in the text between the other
			// added tokens; its content is normalized too.
			pat := a.Content
			if t.nfc {
				pat = nfc(pat)
			}
			normd = append(normd, a)
			normPat = append(normPat, pat)
		} else {
			raw = append(raw, a)
			rawPat = append(rawPat, a.Content)
		}
	}
	t.added = added
	t.rawAdded = newAddedMatcher(raw, rawPat)
	t.normAdded = newAddedMatcher(normd, normPat)

	n := maxSeen + 1
	if n > 4*(len(t.model.vocab)+len(added))+1024 {
		return fmt.Errorf("tokenizer.json: token ids are too sparse (max id %d for %d tokens)", maxSeen, len(t.model.vocab)+len(added))
	}
	for len(t.tokens) < n {
		t.tokens = append(t.tokens, "")
		t.has = append(t.has, false)
	}
	for _, a := range added {
		// An added token takes precedence over a vocab entry with its id.
		t.tokens[a.ID], t.has[a.ID] = a.Content, true
	}
	t.decoded = make([][]byte, n)
	for id, tok := range t.tokens {
		if !t.has[id] {
			continue
		}
		if !t.byteLevelDecoder {
			t.decoded[id] = []byte(tok)
			continue
		}
		// The ByteLevel decoder maps every character of a token back to its
		// byte, added tokens included; a token with a character outside the
		// byte-level alphabet is kept as its UTF-8.
		if b, ok := byteLevelBytes(tok); ok {
			t.decoded[id] = b
		} else {
			t.decoded[id] = []byte(tok)
		}
	}
	return nil
}
