package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of added_tokens in tokenizer.json.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedMatcher finds added tokens in text the way Hugging Face's
// AddedVocabulary does: leftmost-longest matches (an Aho-Corasick automaton
// there), then the single_word, lstrip and rstrip options of the matched
// token.
type addedMatcher struct {
	tokens  []addedToken
	pattern []string // what is searched: the content, NFC'd for normalized tokens
	byFirst [256][]int32
}

func newAddedMatcher(tokens []addedToken, patterns []string) *addedMatcher {
	m := &addedMatcher{tokens: tokens, pattern: patterns}
	for i, p := range patterns {
		if p == "" {
			continue // an empty token would match everywhere; Hugging Face cannot match it either
		}
		m.byFirst[p[0]] = append(m.byFirst[p[0]], int32(i))
	}
	for b := range m.byFirst {
		c := m.byFirst[b]
		// Longest first; among equal contents the later entry wins, as in the
		// content → id map of Hugging Face.
		sort.SliceStable(c, func(x, y int) bool { return len(patterns[c[x]]) > len(patterns[c[y]]) })
	}
	return m
}

func (m *addedMatcher) empty() bool {
	if m == nil {
		return true
	}
	for _, c := range m.byFirst {
		if len(c) > 0 {
			return false
		}
	}
	return true
}

// find returns the leftmost-longest match at or after i: its start, end and
// token index, or start -1.
func (m *addedMatcher) find(s string, i int) (start, end, tok int) {
	for ; i < len(s); i++ {
		cands := m.byFirst[s[i]]
		if len(cands) == 0 {
			continue
		}
		best := -1
		for _, c := range cands {
			p := m.pattern[c]
			if best >= 0 && len(p) < len(m.pattern[best]) {
				break
			}
			if strings.HasPrefix(s[i:], p) {
				best = int(c)
			}
		}
		if best >= 0 {
			return i, i + len(m.pattern[best]), best
		}
	}
	return -1, -1, -1
}

// segment is a piece of the input: either an added token (id >= 0) or text
// to normalize and pre-tokenize (id < 0).
type segment struct {
	text string
	id   int
}

// split appends to dst the segments of s: matched added tokens and the text
// between them.
func (m *addedMatcher) split(dst []segment, s string) []segment {
	if m.empty() {
		return append(dst, segment{s, -1})
	}
	done := 0 // end of the last emitted segment
	for i := 0; i < len(s); {
		start, stop, k := m.find(s, i)
		if start < 0 {
			break
		}
		i = stop // the automaton resumes after the raw match
		if start < done {
			// Only possible after an rstrip that ate the start of this match;
			// Hugging Face would emit overlapping pieces. Skip it.
			continue
		}
		tok := &m.tokens[k]
		if tok.SingleWord {
			if (start > 0 && endsWithWordChar(s[:start])) || (stop < len(s) && startsWithWordChar(s[stop:])) {
				continue
			}
		}
		if tok.LStrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), done)
		}
		if tok.RStrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if start > done {
			dst = append(dst, segment{s[done:start], -1})
		}
		dst = append(dst, segment{s[start:stop], tok.ID})
		done = stop
	}
	if done < len(s) {
		dst = append(dst, segment{s[done:], -1})
	}
	return dst
}

// isWordChar approximates the Unicode \w of Rust's regex crate: alphabetic,
// marks, decimal digits, connector punctuation and the joiners.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D
}

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordChar(r)
}
