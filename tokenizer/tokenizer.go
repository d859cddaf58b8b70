// Package tokenizer implements the BPE tokenizers of Hugging Face
// tokenizer.json files — Qwen, Llama 3, Mistral/Mixtral, DeepSeek-V3 — with
// results identical to the Hugging Face tokenizers library (0.23) for the
// components it supports:
//
//   - normalizers NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip
//     and Sequence;
//   - pre-tokenizers Split (any regex through regexp2 with Hugging Face's
//     Unicode tables; hand-written matchers for the Qwen2, Llama 3 and
//     DeepSeek-V3 patterns),
//     ByteLevel (with or without its regex and prefix space), Metaspace,
//     Digits, Punctuation, Whitespace, WhitespaceSplit, CharDelimiterSplit
//     and Sequence;
//   - the BPE model with byte_fallback, ignore_merges, unk_token, fuse_unk,
//     continuing_subword_prefix and end_of_word_suffix;
//   - added tokens with lstrip, rstrip, single_word, normalized and special;
//   - decoders ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and
//     Sequence;
//   - post-processors TemplateProcessing, ByteLevel, BertProcessing,
//     RobertaProcessing and Sequence (EncodeWithSpecialTokens).
//
// Any other component is refused with an error that names it.
//
// Encode does what tokenizers' encode(text, add_special_tokens=False) does:
// added tokens are found in the raw text first; the text between them is
// normalized, split into pre-tokens and merged. No BOS/EOS or template is
// added (EncodeWithSpecialTokens adds them). Decode is
// decode(ids, skip_special_tokens=False).
package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"
)

// Tokenizer encodes text to token ids and back. It is safe for concurrent
// use.
type Tokenizer struct {
	model bpeModel

	rawAdded  *addedMatcher // added tokens with normalized=false: matched in the raw text
	normAdded *addedMatcher // added tokens with normalized=true: matched after normalization
	addedIDs  map[string]int
	added     []addedToken

	normalizer normalizer   // nil: none
	pre        preTokenizer // nil: the whole text is one piece
	fastDigits int          // 1 or 3: pre is the Qwen2 or Llama 3 Split + ByteLevel, done by nextSplit
	post       postProcessor

	// tokens[id] is the token string of id ("" with has[id] false for an
	// unused id); special[id] marks special added tokens.
	tokens  []string
	has     []bool
	special []bool

	// Decoding: through the decoder chain dec when there is one, otherwise
	// from decoded[id], what a ByteLevel decoder (byteLevelDecoder) or none
	// (tokens joined with spaces) turns each token into.
	dec              decoder
	decoded          [][]byte
	byteLevelDecoder bool

	segPool sync.Pool // *[]segment
}

// Load reads a tokenizer from path, which is either a tokenizer.json file or
// a directory that contains one. A tokenizer_config.json beside it is read
// for what transformers takes from it (see EncodeWithSpecialTokens).
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	file := path
	if st.IsDir() {
		file = filepath.Join(path, "tokenizer.json")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if st.IsDir() && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tokenizer: %s has no tokenizer.json", path)
		}
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := t.applyConfig(filepath.Dir(file)); err != nil {
		return nil, err
	}
	return t, nil
}

// Encode returns the token ids of text. Added and special tokens in text
// (such as "<|im_end|>") are recognized and encoded as their own ids; no
// BOS/EOS or other template tokens are added.
//
// Bytes of text that are not valid UTF-8 are kept, each treated as a
// punctuation-like character, and encoded as byte tokens (Hugging Face only
// accepts valid UTF-8).
func (t *Tokenizer) Encode(text string) []int {
	sp, _ := t.segPool.Get().(*[]segment)
	if sp == nil {
		sp = new([]segment)
	}
	segs := t.rawAdded.split((*sp)[:0], text)
	ids := make([]int, 0, len(text)/3+8) // English runs at 2.5-4 bytes per token
	for k, seg := range segs {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			s = t.normalizer.normalize(s)
		}
		if t.normAdded.empty() {
			ids = t.encodeText(ids, s, k == 0)
			continue
		}
		for j, sub := range t.normAdded.split(nil, s) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
			} else {
				ids = t.encodeText(ids, sub.text, k == 0 && j == 0)
			}
		}
	}
	clear(segs)
	*sp = segs[:0]
	t.segPool.Put(sp)
	return ids
}

// encodeText pre-tokenizes normalized text and appends the BPE ids of each
// piece. first says whether s starts the input.
func (t *Tokenizer) encodeText(ids []int, s string, first bool) []int {
	if t.fastDigits > 0 {
		for i := 0; i < len(s); {
			j := nextSplit(s, i, t.fastDigits)
			ids = t.model.encodeWord(ids, s[i:j])
			i = j
		}
		return ids
	}
	if t.pre == nil {
		return t.model.encodeWord(ids, s)
	}
	for _, p := range t.pre.split(nil, piece{s, first}) {
		ids = t.model.encodeWord(ids, p.s)
	}
	return ids
}

// Decode returns the text of ids, special tokens included, as Hugging
// Face's decode(ids, skip_special_tokens=False): ids that are not in the
// tokenizer (padding rows of a model's embedding, say) are skipped, and
// bytes that do not form valid UTF-8 (a character cut in the middle) are
// replaced by U+FFFD as the decoder there does. It fails only on a
// negative id.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	if t.dec != nil {
		toks, err := t.decodeTokens(ids)
		if err != nil {
			return "", err
		}
		return strings.Join(t.dec.decodeChain(toks, false), ""), nil
	}
	b, err := t.DecodeBytes(ids)
	if err != nil {
		return "", err
	}
	if !t.byteLevelDecoder || utf8.Valid(b) {
		return string(b), nil
	}
	return string(appendLossyUTF8(make([]byte, 0, len(b)+8), b)), nil
}

// DecodeBytes returns the raw bytes that ids stand for, without replacing
// invalid UTF-8. Streaming callers use it to print text as it is generated,
// holding back an incomplete character. Like Decode it skips ids that are
// not in the tokenizer and fails only on a negative id.
func (t *Tokenizer) DecodeBytes(ids []int) ([]byte, error) {
	if t.dec != nil {
		toks, err := t.decodeTokens(ids)
		if err != nil {
			return nil, err
		}
		return []byte(strings.Join(t.dec.decodeChain(toks, true), "")), nil
	}
	b := make([]byte, 0, 4*len(ids))
	k := 0
	for _, id := range ids {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer: token id %d is negative", id)
		}
		if id >= len(t.tokens) || !t.has[id] {
			continue
		}
		if !t.byteLevelDecoder && k > 0 {
			b = append(b, ' ')
		}
		k++
		b = append(b, t.decoded[id]...)
	}
	return b, nil
}

// DecodeBytesFrom returns the raw bytes that ids[from:] add to the text of
// ids[:from], so that DecodeBytes(ids[:from]) followed by them is
// DecodeBytes(ids). Streaming callers pass all the ids so far: decoding the
// newest id alone is not the same when the decoder looks at the whole
// sequence (Mistral's strips the space of the first token only).
func (t *Tokenizer) DecodeBytesFrom(ids []int, from int) ([]byte, error) {
	from = min(max(from, 0), len(ids))
	if t.dec == nil && t.byteLevelDecoder {
		return t.DecodeBytes(ids[from:])
	}
	before, err := t.DecodeBytes(ids[:from])
	if err != nil {
		return nil, err
	}
	all, err := t.DecodeBytes(ids)
	if err != nil {
		return nil, err
	}
	n := 0
	for n < len(before) && n < len(all) && before[n] == all[n] {
		n++
	}
	return all[n:], nil
}

// decodeTokens returns the token strings of the ids in the tokenizer.
func (t *Tokenizer) decodeTokens(ids []int) ([]string, error) {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer: token id %d is negative", id)
		}
		if id < len(t.tokens) && t.has[id] {
			toks = append(toks, t.tokens[id])
		}
	}
	return toks, nil
}

// IsSpecial reports whether id is an added token marked special (what
// skip_special_tokens would drop).
func (t *Tokenizer) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// VocabSize returns the largest token id plus one, counting added and
// special tokens. It is the smallest embedding size the tokenizer fits.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenID returns the id of a token given as it is written in tokenizer.json:
// an added token's content ("<|im_end|>") or a vocabulary entry as the
// model spells it ("Ġthe" for " the" in a byte-level vocabulary, "▁the" in
// a Metaspace one).
func (t *Tokenizer) TokenID(s string) (int, bool) {
	if id, ok := t.addedIDs[s]; ok {
		return id, true
	}
	id, ok := t.model.vocab[s]
	return id, ok
}

// Token returns the token string of id as TokenID takes it, and false for an
// id that is not in the vocabulary.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.tokens) || !t.has[id] {
		return "", false
	}
	return t.tokens[id], true
}

// SpecialTokens returns the contents of the added tokens marked special, in
// the order of tokenizer.json.
func (t *Tokenizer) SpecialTokens() []string {
	var out []string
	for _, tok := range t.added {
		if tok.Special {
			out = append(out, tok.Content)
		}
	}
	return out
}

// hasAddedString reports whether s contains the content of an added token
// (tests use it to filter fuzz inputs).
func (t *Tokenizer) hasAddedString(s string) bool {
	for c := range t.addedIDs {
		if c != "" && strings.Contains(s, c) {
			return true
		}
	}
	return false
}
