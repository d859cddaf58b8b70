// Package tokenizer implements byte-level BPE tokenizers read from a Hugging
// Face tokenizer.json, with results identical to the Hugging Face tokenizers
// library for the components it supports: the BPE model, added and special
// tokens, the NFC normalizer, the Split pre-tokenizer with the Qwen2 pattern
// (Isolated) followed by the ByteLevel pre-tokenizer, and the ByteLevel
// decoder. Any other component is refused with an error that names it.
//
// Encode does what tokenizers' encode(text, add_special_tokens=False) does:
// added tokens are found in the raw text first; the text between them is
// normalized, split into pre-tokens, mapped to the byte-level alphabet and
// merged. No BOS/EOS or template is added. Decode is
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

	nfc bool // the normalizer is NFC (otherwise there is none)

	// tokens[id] is the token string of id ("" with has[id] false for an
	// unused id); decoded[id] what the decoder turns it into.
	tokens  []string
	has     []bool
	decoded [][]byte

	byteLevelDecoder bool // false: no decoder, tokens are joined with spaces

	segPool sync.Pool // *[]segment
}

// Load reads a tokenizer from path, which is either a tokenizer.json file or
// a directory that contains one.
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
	for _, seg := range segs {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		s := seg.text
		if t.nfc {
			s = nfc(s)
		}
		if t.normAdded.empty() {
			ids = t.encodeText(ids, s)
			continue
		}
		for _, sub := range t.normAdded.split(nil, s) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
			} else {
				ids = t.encodeText(ids, sub.text)
			}
		}
	}
	clear(segs)
	*sp = segs[:0]
	t.segPool.Put(sp)
	return ids
}

// encodeText pre-tokenizes normalized text and appends the BPE ids of each
// piece.
func (t *Tokenizer) encodeText(ids []int, s string) []int {
	for i := 0; i < len(s); {
		j := nextQwen2(s, i)
		ids = t.model.encodeWord(ids, s[i:j])
		i = j
	}
	return ids
}

// Decode returns the text of ids, special tokens included. Bytes that do not
// form valid UTF-8 (a sequence cut in the middle of a character) are
// replaced by U+FFFD as Hugging Face does. It fails on an id that is not in
// the vocabulary.
func (t *Tokenizer) Decode(ids []int) (string, error) {
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
// holding back an incomplete character. It fails on an id that is not in
// the vocabulary.
func (t *Tokenizer) DecodeBytes(ids []int) ([]byte, error) {
	b := make([]byte, 0, 4*len(ids))
	for k, id := range ids {
		if id < 0 || id >= len(t.tokens) || !t.has[id] {
			return nil, fmt.Errorf("tokenizer: token id %d is not in the vocabulary (size %d)", id, len(t.tokens))
		}
		if !t.byteLevelDecoder && k > 0 {
			b = append(b, ' ')
		}
		b = append(b, t.decoded[id]...)
	}
	return b, nil
}

// VocabSize returns the largest token id plus one, counting added and
// special tokens. It is the smallest embedding size the tokenizer fits.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenID returns the id of a token given as it is written in tokenizer.json:
// an added token's content ("<|im_end|>") or a vocabulary entry in the
// byte-level alphabet ("Ġthe" for " the").
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
