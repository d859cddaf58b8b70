package tokenizer

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer is one normalizer of tokenizer.json. It rewrites the text
// between added tokens before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

// seqNormalizer is Sequence: its members in order.
type seqNormalizer []normalizer

func (q seqNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// unicodeNormalizer is NFC, NFD, NFKC or NFKD.
type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) string { return hfNormalize(u.form, s) }

// lowercaseNormalizer is Lowercase: every character mapped by its full
// lower-case mapping (Rust's char::to_lowercase, whose Unicode tables
// hfLower brings in), with no context rules — Σ is always σ.
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			b.WriteByte(s[i])
		default:
			if l, ok := hfLower[r]; ok {
				b.WriteString(l)
			} else {
				b.WriteRune(unicode.ToLower(r))
			}
		}
		i += w
	}
	return b.String()
}

// prependNormalizer is Prepend: its string before any non-empty text.
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prefix + s
}

// replaceNormalizer is Replace: every match of the pattern becomes content
// (taken literally).
type replaceNormalizer struct {
	pat     pattern
	content string
}

func (r replaceNormalizer) normalize(s string) string { return replaceAll(r.pat, s, r.content) }

// stripNormalizer is Strip: white space removed from the left and/or right.
type stripNormalizer struct{ left, right bool }

func (st stripNormalizer) normalize(s string) string {
	if st.left {
		s = strings.TrimLeftFunc(s, isWhite)
	}
	if st.right {
		s = strings.TrimRightFunc(s, isWhite)
	}
	return s
}

// replaceAll replaces the non-overlapping matches of p in s by content.
func replaceAll(p pattern, s, content string) string {
	ms := p.matches(nil, s)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for _, m := range ms {
		b.WriteString(s[prev:m[0]])
		b.WriteString(content)
		prev = m[1]
	}
	b.WriteString(s[prev:])
	return b.String()
}

// cgj is U+034F COMBINING GRAPHEME JOINER.
const cgj = "\u034f"

// nfc returns the NFC form of s as the Hugging Face NFC normalizer computes
// it.
func nfc(s string) string { return hfNormalize(norm.NFC, s) }

// hfNormalize returns s in the normalization form f as Hugging Face's
// normalizers (Rust's unicode-normalization) compute it.
//
// golang.org/x/text does almost the same, with two differences that send
// the text to exactNormalize, which follows the definition directly: x/text
// implements the Stream-Safe Text Format (after 30 non-starters in a row it
// inserts a U+034F, which plain normalization does not), and its Unicode
// tables are newer, so that it gives a combining class or a decomposition
// to characters that Hugging Face leaves alone (hfNormUnknown). Invalid UTF-8
// bytes are kept.
func hfNormalize(f norm.Form, s string) string {
	unknown := false
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if hfNormUnknown.contains(r) {
			unknown = true
			break
		}
		i += w
	}
	compat := f == norm.NFKC || f == norm.NFKD
	compose := f == norm.NFC || f == norm.NFKC
	if unknown {
		return exactNormalize(s, compat, compose)
	}
	out := f.String(s)
	if strings.Contains(out, cgj) && strings.Count(out, cgj) > strings.Count(s, cgj) {
		return exactNormalize(s, compat, compose)
	}
	return out
}

// exactNFC is NFC by the book; see exactNormalize.
func exactNFC(s string) string { return exactNormalize(s, false, true) }

// exactNormalize is normalization by the book (Unicode §3.11): full
// canonical (or, with compat, compatibility) decomposition, canonical
// ordering of every run of non-starters, then, with compose, canonical
// composition. The data comes from x/text one character (or one pair) at a
// time, where stream-safe limits never apply, except for the characters of
// hfNormUnknown, which are starters that neither decompose nor compose.
// Invalid UTF-8 bytes are kept and block composition like starters that
// compose with nothing.
func exactNormalize(s string, compat, compose bool) string {
	var b strings.Builder
	for len(s) > 0 {
		// The longest valid prefix, normalized as one piece.
		n := 0
		for n < len(s) {
			r, w := utf8.DecodeRuneInString(s[n:])
			if r == utf8.RuneError && w == 1 {
				break
			}
			n += w
		}
		rs := decomposeString(s[:n], compat)
		if compose {
			b.WriteString(composeRunes(rs))
		} else {
			b.WriteString(string(rs))
		}
		if n < len(s) {
			b.WriteByte(s[n])
			n++
		}
		s = s[n:]
	}
	return b.String()
}

// Hangul syllable arithmetic (Unicode §3.12).
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

// decomposeString returns the full decomposition of valid UTF-8 s,
// canonically ordered.
func decomposeString(s string, compat bool) []rune {
	var rs []rune
	for _, r := range s {
		rs = appendDecomposition(rs, r, compat)
	}
	// Canonical ordering: a stable sort of each run of non-starters by
	// combining class.
	for i := 0; i < len(rs); {
		if ccc(rs[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(rs) && ccc(rs[j]) != 0 {
			j++
		}
		slices.SortStableFunc(rs[i:j], func(a, b rune) int { return int(ccc(a)) - int(ccc(b)) })
		i = j
	}
	return rs
}

func appendDecomposition(rs []rune, r rune, compat bool) []rune {
	if si := r - hangulSBase; si >= 0 && si < hangulSCount {
		rs = append(rs, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
		if t := si % hangulTCount; t != 0 {
			rs = append(rs, hangulTBase+t)
		}
		return rs
	}
	if hfNormUnknown.contains(r) {
		return append(rs, r)
	}
	f := norm.NFD
	if compat {
		f = norm.NFKD
	}
	d := f.PropertiesString(string(r)).Decomposition()
	if d == nil {
		return append(rs, r)
	}
	for _, x := range string(d) {
		rs = append(rs, x)
	}
	return rs
}

func ccc(r rune) uint8 {
	if r < 0x300 || hfNormUnknown.contains(r) {
		return 0
	}
	return norm.NFC.PropertiesString(string(r)).CCC()
}

// composeRunes applies canonical composition to a decomposed, canonically
// ordered sequence.
func composeRunes(rs []rune) string {
	if len(rs) == 0 {
		return ""
	}
	out := make([]rune, 0, len(rs))
	starter := -1 // index in out of the last starter
	var lastClass uint8
	for _, c := range rs {
		cc := ccc(c)
		if starter >= 0 {
			// c is not blocked from the starter if nothing lies between them
			// or everything between has a lower non-zero class.
			adjacent := starter == len(out)-1
			if adjacent || (lastClass != 0 && lastClass < cc) {
				if p, ok := composePair(out[starter], c); ok {
					out[starter] = p
					continue
				}
			}
		}
		if cc == 0 {
			starter = len(out)
		}
		lastClass = cc
		out = append(out, c)
	}
	return string(out)
}

// composePair returns the primary composite of a and b, if there is one.
func composePair(a, b rune) (rune, bool) {
	if li := a - hangulLBase; li >= 0 && li < hangulLCount {
		if vi := b - hangulVBase; vi >= 0 && vi < hangulVCount {
			return hangulSBase + (li*hangulVCount+vi)*hangulTCount, true
		}
	}
	if si := a - hangulSBase; si >= 0 && si < hangulSCount && si%hangulTCount == 0 {
		if ti := b - hangulTBase; ti > 0 && ti < hangulTCount {
			return a + ti, true
		}
	}
	// x/text does not expose its composition table; a pair is short enough
	// to ask NFC directly. The result must be one character whose
	// decomposition is exactly a's followed by b's, so that a canonically
	// equivalent reordering is not mistaken for a composite of this pair.
	pair := string(a) + string(b)
	c := norm.NFC.String(pair)
	r, w := utf8.DecodeRuneInString(c)
	if w != len(c) || r == a || hfNormUnknown.contains(r) {
		return 0, false
	}
	want := appendDecomposition(appendDecomposition(nil, a, false), b, false)
	if !slices.Equal(appendDecomposition(nil, r, false), want) {
		return 0, false
	}
	return r, true
}
