package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// fileJSON is the part of tokenizer.json that matters for encoding and
// decoding. truncation and padding are ignored: Encode never truncates or
// pads.
type fileJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Model         json.RawMessage `json:"model"`
	Decoder       json.RawMessage `json:"decoder"`
	PostProcessor json.RawMessage `json:"post_processor"`
}

// component is the common shape of normalizers, pre-tokenizers, decoders
// and post-processors: a type tag, the list of members of a Sequence, and
// the options of each kind.
type component struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	Processors    []json.RawMessage `json:"processors"`

	// Split, Replace
	Pattern  *splitPattern `json:"pattern"`
	Behavior string        `json:"behavior"`
	Invert   bool          `json:"invert"`
	Content  *string       `json:"content"`

	// ByteLevel
	AddPrefixSpace *bool `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`

	// Prepend
	Prepend *string `json:"prepend"`
	// Strip (normalizer)
	StripLeft  *bool `json:"strip_left"`
	StripRight *bool `json:"strip_right"`
	// Strip (decoder)
	Start int `json:"start"`
	Stop  int `json:"stop"`
	// Metaspace
	Replacement   *string `json:"replacement"`
	PrependScheme *string `json:"prepend_scheme"`
	Split         *bool   `json:"split"`
	// Digits
	IndividualDigits bool `json:"individual_digits"`
	// CharDelimiterSplit
	Delimiter *string `json:"delimiter"`

	// TemplateProcessing
	Single        []templateItem                 `json:"single"`
	SpecialTokens map[string]templateSpecialJSON `json:"special_tokens"`
	// BertProcessing, RobertaProcessing
	Sep []json.RawMessage `json:"sep"`
	Cls []json.RawMessage `json:"cls"`
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
// Errors do not name the file; Load adds its path.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	t := &Tokenizer{}
	var err error
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if err := t.parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if err := t.parseDecoder(f.Decoder); err != nil {
		return nil, err
	}
	if err := t.parseModel(f.Model); err != nil {
		return nil, err
	}
	t.model.setMetaSplit()
	if err := t.setAdded(f.AddedTokens); err != nil {
		return nil, err
	}
	if t.post, err = t.parsePostProcessor(f.PostProcessor); err != nil {
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
		return c, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}

// parsePattern reads the pattern of Split, Replace and the Replace decoder.
func parsePattern(what string, p *splitPattern) (pattern, error) {
	switch {
	case p == nil || (p.Regex == nil && p.String == nil):
		return nil, fmt.Errorf("%s without a pattern", what)
	case p.String != nil:
		return stringPattern(*p.String), nil
	}
	re, err := compilePattern(*p.Regex)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return re, nil
}

// oneRune reads an option that must be a single character.
func oneRune(what string, s *string, def rune) (rune, error) {
	if s == nil {
		return def, nil
	}
	r, w := utf8.DecodeRuneInString(*s)
	if w == 0 || w != len(*s) || r == utf8.RuneError {
		return 0, fmt.Errorf("%s %q is not one character", what, *s)
	}
	return r, nil
}

const supportedNormalizers = "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence"

// parseNormalizer returns nil for no normalizer (or an empty Sequence).
func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent("normalizer", raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Prepend":
		if c.Prepend == nil {
			return nil, fmt.Errorf("normalizer Prepend without prepend")
		}
		return prependNormalizer{*c.Prepend}, nil
	case "Replace":
		p, err := parsePattern("normalizer Replace", c.Pattern)
		if err != nil {
			return nil, err
		}
		if c.Content == nil {
			return nil, fmt.Errorf("normalizer Replace without content")
		}
		return replaceNormalizer{p, *c.Content}, nil
	case "Strip":
		return stripNormalizer{left: c.StripLeft == nil || *c.StripLeft, right: c.StripRight == nil || *c.StripRight}, nil
	case "Sequence":
		var q seqNormalizer
		for _, sub := range c.Normalizers {
			n, err := parseNormalizer(sub)
			if err != nil {
				return nil, err
			}
			if n != nil {
				q = append(q, n)
			}
		}
		switch len(q) {
		case 0:
			return nil, nil
		case 1:
			return q[0], nil
		}
		return q, nil
	}
	return nil, fmt.Errorf("normalizer %q is not supported (supported: %s)", c.Type, supportedNormalizers)
}

const supportedPreTokenizers = "Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, CharDelimiterSplit, Sequence"

// The Split patterns that have a hand-written matcher (pretokenize.go):
// Qwen2's, and Llama 3's, which differs from it only in taking up to three
// digits at a time.
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// parsePreTokenizer sets the pre-tokenization pipeline. A ByteLevel step
// must come last (it turns pieces into bytes for the model); the pipeline
// Split(Qwen2 or Llama 3 pattern, Isolated) + ByteLevel(no regex) takes the
// hand-written fast path.
func (t *Tokenizer) parsePreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
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
	var q seqPre
	for k, s := range steps {
		switch s.Type {
		case "ByteLevel":
			if k != len(steps)-1 {
				return fmt.Errorf("pre-tokenizer ByteLevel before other pre-tokenizers is not supported")
			}
			t.model.byteLevel = true
			if s.AddPrefixSpace != nil && *s.AddPrefixSpace {
				q = append(q, prefixSpacePre{})
			}
			if s.UseRegex == nil || *s.UseRegex {
				re, err := compileRegex(gpt2Pattern)
				if err != nil {
					return err
				}
				q = append(q, splitPre{re, isolated, false})
			}
		case "Split":
			p, err := parsePattern("pre-tokenizer Split", s.Pattern)
			if err != nil {
				return err
			}
			b, ok := behaviors[s.Behavior]
			if !ok {
				return fmt.Errorf("pre-tokenizer Split: behavior %q is not supported", s.Behavior)
			}
			q = append(q, splitPre{p, b, s.Invert})
		case "Metaspace":
			r, err := oneRune("pre-tokenizer Metaspace: replacement", s.Replacement, '▁')
			if err != nil {
				return err
			}
			scheme, err := prependScheme("pre-tokenizer", s)
			if err != nil {
				return err
			}
			q = append(q, metaspacePre{repl: r, prepend: scheme, splitAt: s.Split == nil || *s.Split})
		case "Digits":
			b := contiguous
			if s.IndividualDigits {
				b = isolated
			}
			q = append(q, charSplitPre{isNumeric, b})
		case "Punctuation":
			b := isolated
			if s.Behavior != "" {
				var ok bool
				if b, ok = behaviors[s.Behavior]; !ok {
					return fmt.Errorf("pre-tokenizer Punctuation: behavior %q is not supported", s.Behavior)
				}
			}
			q = append(q, charSplitPre{isPunctuation, b})
		case "Whitespace":
			re, err := compileRegex(whitespacePattern)
			if err != nil {
				return err
			}
			q = append(q, splitPre{re, removed, true})
		case "WhitespaceSplit":
			q = append(q, charSplitPre{isWhite, removed})
		case "CharDelimiterSplit":
			r, err := oneRune("pre-tokenizer CharDelimiterSplit: delimiter", s.Delimiter, 0)
			if err != nil || s.Delimiter == nil {
				return fmt.Errorf("pre-tokenizer CharDelimiterSplit needs a one-character delimiter")
			}
			q = append(q, charSplitPre{func(c rune) bool { return c == r }, removed})
		default:
			return fmt.Errorf("pre-tokenizer %q is not supported (supported: %s)", s.Type, supportedPreTokenizers)
		}
	}
	if len(steps) == 2 && steps[0].Type == "Split" && steps[1].Type == "ByteLevel" && len(q) == 1 {
		if sp, ok := q[0].(splitPre); ok && sp.b == isolated && !sp.invert {
			if re, ok := sp.pat.(*handPattern); ok {
				switch re.src {
				case qwen2Pattern:
					t.fastDigits = 1
				case llama3Pattern:
					t.fastDigits = 3
				}
			}
		}
	}
	switch len(q) {
	case 0:
	case 1:
		t.pre = q[0]
	default:
		t.pre = q
	}
	return nil
}

// prependScheme reads Metaspace's prepend_scheme, or the older
// add_prefix_space.
func prependScheme(what string, c component) (string, error) {
	if c.PrependScheme != nil {
		switch *c.PrependScheme {
		case "always", "never", "first":
			return *c.PrependScheme, nil
		}
		return "", fmt.Errorf("%s Metaspace: prepend_scheme %q is not one of always, never, first", what, *c.PrependScheme)
	}
	if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
		return "never", nil
	}
	return "always", nil
}

const supportedDecoders = "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence"

// parseDecoder sets the decoder. No decoder, and ByteLevel alone, take the
// fast path (a decoded byte string per id).
func (t *Tokenizer) parseDecoder(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	d, err := parseDecoderComponent(raw)
	if err != nil {
		return err
	}
	switch d := d.(type) {
	case byteLevelDecoder:
		t.byteLevelDecoder = true
	case seqDecoder:
		if len(d) == 0 {
			return fmt.Errorf("decoder: empty Sequence is not supported")
		}
		allByteLevel := true
		for _, m := range d {
			_, ok := m.(byteLevelDecoder)
			allByteLevel = allByteLevel && ok
		}
		if allByteLevel {
			t.byteLevelDecoder = true
		} else {
			t.dec = d
		}
	default:
		t.dec = d
	}
	return nil
}

func parseDecoderComponent(raw json.RawMessage) (decoder, error) {
	c, err := parseComponent("decoder", raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		r, err := oneRune("decoder Strip: content", c.Content, ' ')
		if err != nil {
			return nil, err
		}
		if c.Start < 0 || c.Stop < 0 {
			return nil, fmt.Errorf("decoder Strip: negative start or stop")
		}
		return stripDecoder{content: r, start: c.Start, stop: c.Stop}, nil
	case "Replace":
		p, err := parsePattern("decoder Replace", c.Pattern)
		if err != nil {
			return nil, err
		}
		if c.Content == nil {
			return nil, fmt.Errorf("decoder Replace without content")
		}
		return replaceDecoder{p, *c.Content}, nil
	case "Metaspace":
		r, err := oneRune("decoder Metaspace: replacement", c.Replacement, '▁')
		if err != nil {
			return nil, err
		}
		scheme, err := prependScheme("decoder", c)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{repl: r, stripHead: scheme != "never"}, nil
	case "Sequence":
		var q seqDecoder
		for _, sub := range c.Decoders {
			d, err := parseDecoderComponent(sub)
			if err != nil {
				return nil, err
			}
			q = append(q, d)
		}
		return q, nil
	}
	return nil, fmt.Errorf("decoder %q is not supported (supported: %s)", c.Type, supportedDecoders)
}

func (t *Tokenizer) parseModel(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("no model")
	}
	var m bpeJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		var c component
		if json.Unmarshal(raw, &c) == nil && c.Type != "" && c.Type != "BPE" {
			return fmt.Errorf("model %q is not supported (supported: BPE)", c.Type)
		}
		return fmt.Errorf("model: %w", err)
	}
	switch {
	case m.Type != "" && m.Type != "BPE":
		return fmt.Errorf("model %q is not supported (supported: BPE)", m.Type)
	case m.Type == "" && m.Merges == nil:
		return fmt.Errorf("model has no type and no merges; only BPE is supported")
	case m.Dropout != nil && *m.Dropout != 0:
		return fmt.Errorf("BPE dropout %g is not supported", *m.Dropout)
	}

	bm := &t.model
	if m.ContinuingSubwordPrefix != nil {
		bm.prefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		bm.suffix = *m.EndOfWordSuffix
	}
	bm.byteFallback = m.ByteFallback
	bm.vocab = make(map[string]int, len(m.Vocab))
	maxSeen := -1
	for tok, id := range m.Vocab {
		if id < 0 || id >= maxID {
			return fmt.Errorf("vocab: token %q has id %d, outside [0, %d)", tok, id, maxID)
		}
		bm.vocab[tok] = id
		maxSeen = max(maxSeen, id)
	}
	bm.unkID = -1
	if m.UnkToken != nil {
		id, ok := bm.vocab[*m.UnkToken]
		if !ok {
			return fmt.Errorf("BPE unk_token %q is not in the vocab", *m.UnkToken)
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
		bm.fallbackID[b] = -1
		if id, ok := bm.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			bm.fallbackID[b] = int32(id)
		}
	}

	bm.merges = make(map[uint64]mergeRule, len(m.Merges))
	for rank, raw := range m.Merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return fmt.Errorf("merges[%d]: %w", rank, err)
		}
		aID, ok := bm.vocab[a]
		if !ok {
			return fmt.Errorf("merges[%d]: token %q is not in the vocab", rank, a)
		}
		bID, ok := bm.vocab[b]
		if !ok {
			return fmt.Errorf("merges[%d]: token %q is not in the vocab", rank, b)
		}
		// The merged token drops the right side's continuing-subword
		// prefix, as in Hugging Face ("a" + "##b" → "ab").
		rest := b
		if len(bm.prefix) > 0 && strings.HasPrefix(b, bm.prefix) {
			rest = b[len(bm.prefix):]
		}
		newID, ok := bm.vocab[a+rest]
		if !ok {
			return fmt.Errorf("merges[%d]: merged token %q is not in the vocab", rank, a+rest)
		}
		// A repeated pair keeps its last rank, as in Hugging Face's merge map.
		bm.merges[pairKey(int32(aID), int32(bID))] = mergeRule{rank: int32(rank), id: int32(newID)}
	}

	// The id → token table. Its size is bounded by the number of entries so
	// that a few bytes of JSON cannot claim gigabytes.
	n := maxSeen + 1
	if n > 4*len(m.Vocab)+1024 {
		return fmt.Errorf("vocab ids are too sparse (max id %d for %d tokens)", maxSeen, len(m.Vocab))
	}
	t.tokens = make([]string, n)
	t.has = make([]bool, n)
	for tok, id := range bm.vocab {
		if t.has[id] {
			other := t.tokens[id]
			if other > tok {
				other, tok = tok, other
			}
			return fmt.Errorf("vocab: tokens %q and %q share id %d", other, tok, id)
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
//
// Like Hugging Face, it does not take the ids written in added_tokens as
// given: it adds the tokens in file order and gives each the id its content
// already has (in the vocab, or among the tokens added before it) or else
// the next id after the vocab and the tokens added so far. For real files
// this is the id written there.
func (t *Tokenizer) setAdded(added []addedToken) error {
	for _, a := range added {
		if a.ID < 0 || a.ID >= maxID {
			return fmt.Errorf("added token %q has id %d, outside [0, %d)", a.Content, a.ID, maxID)
		}
	}
	added = slices.Clone(added)
	vocabLen := len(t.model.vocab)
	t.addedIDs = make(map[string]int, len(added))
	maxAdded := -1
	for k := range added {
		a := &added[k]
		if a.Content == "" {
			continue
		}
		id, ok := t.addedIDs[a.Content]
		if !ok {
			id, ok = t.model.vocab[a.Content]
		}
		if !ok {
			id = vocabLen
			if maxAdded >= vocabLen || (maxAdded >= 0 && vocabLen == 0) {
				id = maxAdded + 1
			}
		}
		a.ID = id
		t.addedIDs[a.Content] = id
		maxAdded = max(maxAdded, id)
	}
	var raw, normd []addedToken
	var rawPat, normPat []string
	maxSeen := len(t.tokens) - 1
	for _, a := range added {
		if a.Content == "" {
			continue // Hugging Face ignores an empty added token
		}
		maxSeen = max(maxSeen, a.ID)
		if a.Normalized {
			// Matched after normalization, in the text between the other
			// added tokens; its content is normalized too.
			pat := a.Content
			if t.normalizer != nil {
				pat = t.normalizer.normalize(pat)
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
		return fmt.Errorf("token ids are too sparse (max id %d for %d tokens)", maxSeen, len(t.model.vocab)+len(added))
	}
	for len(t.tokens) < n {
		t.tokens = append(t.tokens, "")
		t.has = append(t.has, false)
	}
	for _, a := range added {
		// An added token takes precedence over a vocab entry with its id.
		// Hugging Face stores a normalized token's content normalized, and
		// decodes it so.
		if a.Content == "" {
			continue
		}
		tok := a.Content
		if a.Normalized && t.normalizer != nil {
			tok = t.normalizer.normalize(tok)
		}
		t.tokens[a.ID], t.has[a.ID] = tok, true
	}
	t.special = make([]bool, n)
	for _, a := range added {
		if a.Special && a.Content != "" {
			t.special[a.ID] = true
		}
	}
	if t.dec != nil {
		return nil // decoded through the decoder chain
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
