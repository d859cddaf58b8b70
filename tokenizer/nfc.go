package tokenizer

import (
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// cgj is U+034F COMBINING GRAPHEME JOINER.
const cgj = "\u034f"

// nfc returns the NFC form of s as the Hugging Face NFC normalizer (Rust's
// unicode-normalization) computes it.
//
// golang.org/x/text implements the Stream-Safe Text Format: after 30
// non-starters in a row it inserts a U+034F, which plain NFC does not. Text
// with such a run (rare outside "Zalgo" text) is normalized by exactNFC,
// which follows the definition directly. Invalid UTF-8 bytes are kept.
func nfc(s string) string {
	out := norm.NFC.String(s)
	if strings.Contains(out, cgj) && strings.Count(out, cgj) > strings.Count(s, cgj) {
		return exactNFC(s)
	}
	return out
}

// exactNFC is NFC by the book (Unicode §3.11): full canonical decomposition,
// canonical ordering of every run of non-starters, then canonical
// composition. The data comes from x/text one character (or one pair) at a
// time, where stream-safe limits never apply. Invalid UTF-8 bytes are kept
// and block composition like starters that compose with nothing.
func exactNFC(s string) string {
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
		b.WriteString(composeRunes(decomposeString(s[:n])))
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

// decomposeString returns the canonical decomposition of valid UTF-8 s,
// canonically ordered.
func decomposeString(s string) []rune {
	var rs []rune
	for _, r := range s {
		rs = appendDecomposition(rs, r)
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

func appendDecomposition(rs []rune, r rune) []rune {
	if si := r - hangulSBase; si >= 0 && si < hangulSCount {
		rs = append(rs, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
		if t := si % hangulTCount; t != 0 {
			rs = append(rs, hangulTBase+t)
		}
		return rs
	}
	d := norm.NFD.PropertiesString(string(r)).Decomposition()
	if d == nil {
		return append(rs, r)
	}
	for _, x := range string(d) {
		rs = append(rs, x)
	}
	return rs
}

func ccc(r rune) uint8 { return norm.NFC.PropertiesString(string(r)).CCC() }

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
	if w != len(c) || r == a {
		return 0, false
	}
	want := appendDecomposition(appendDecomposition(nil, a), b)
	if !slices.Equal(appendDecomposition(nil, r), want) {
		return 0, false
	}
	return r, true
}
