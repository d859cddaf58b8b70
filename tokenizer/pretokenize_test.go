package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// Expected splits below are worked out by hand from the Qwen2 pattern
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// under leftmost-first alternation with backtracking (Oniguruma semantics).
func TestPreTokenizeHandDerived(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"words", "Hello world", []string{"Hello", " world"}},

		// Contractions: alternative 1, case-insensitive.
		{"n't", "don't", []string{"don", "'t"}},
		{"upper LL", "I'LL", []string{"I", "'LL"}},
		{"upper RE", "they'RE", []string{"they", "'RE"}},
		{"mixed case chain", "we'Ve'd", []string{"we", "'Ve", "'d"}},
		{"'s alone", "'s", []string{"'s"}},
		{"'S alone", "'S", []string{"'S"}},
		{"'s splits a word", "'sfoo", []string{"'s", "foo"}},
		{"'LL splits a word", "'LLama", []string{"'LL", "ama"}},
		{"'Ll", "'Ll", []string{"'Ll"}},
		{"I'm", "I'M", []string{"I", "'M"}},
		{"you're", "you're", []string{"you", "'re"}},
		{"long s folds to s", "x'ſx", []string{"x", "'ſ", "x"}},
		{"long s then t", "'ſt", []string{"'ſ", "t"}},
		{"fullwidth S does not fold", "'Ｓx", []string{"'Ｓx"}},
		{"sharp s does not fold", "'ßx", []string{"'ßx"}},
		{"kelvin sign is just a letter", "'Kx", []string{"'Kx"}},
		{"'r without e", "'r", []string{"'r"}},
		{"'l without second l", "'lx", []string{"'lx"}},
		{"apostrophe before word", "'hello", []string{"'hello"}},
		{"two apostrophes", "''s", []string{"''", "s"}},
		{"space apostrophe", " 's", []string{" '", "s"}},
		{"it's 'tis", "it's 'tis", []string{"it", "'s", " '", "tis"}},
		{"'t then quote", "'t'", []string{"'t", "'"}},
		{"apostrophe newline", "'\n", []string{"'\n"}},

		// Whitespace runs: \s*[\r\n]+, \s+(?!\S), \s+.
		{"one space", " ", []string{" "}},
		{"spaces only", "   ", []string{"   "}},
		{"two spaces", "a  b", []string{"a", " ", " b"}},
		{"three spaces", "a   b", []string{"a", "  ", " b"}},
		{"trailing spaces", "a   ", []string{"a", "   "}},
		{"long run", strings.Repeat(" ", 100) + "x", []string{strings.Repeat(" ", 99), " x"}},
		{"long run at end", "x" + strings.Repeat(" ", 100), []string{"x", strings.Repeat(" ", 100)}},
		{"space newline space", "a \n b", []string{"a", " \n", " b"}},
		{"newlines then space", "a\n\n b", []string{"a", "\n\n", " b"}},
		{"run up to last newline", "a \n\n  b", []string{"a", " \n\n", " ", " b"}},
		{"newline first", "\nb", []string{"\n", "b"}},
		{"newline last", "a\n", []string{"a", "\n"}},
		{"newlines spaces", "\n\n\n   x", []string{"\n\n\n", "  ", " x"}},
		{"tabs after newline", "x  \n\t\ty", []string{"x", "  \n", "\t", "\ty"}},
		{"two tabs", "x\t\ty", []string{"x", "\t", "\ty"}},
		{"space tab digit", "x \t1", []string{"x", " ", "\t", "1"}},
		{"space digit", " 1", []string{" ", "1"}},
		{"two spaces digit", "  1", []string{" ", " ", "1"}},
		{"CRLF", "a\r\n", []string{"a", "\r\n"}},
		{"CRLF CRLF", "\r\n\r\n", []string{"\r\n\r\n"}},
		{"windows lines", "line\r\nwindows\r\n", []string{"line", "\r\n", "windows", "\r\n"}},
		{"lone CR", "a\rb", []string{"a", "\r", "b"}},
		{"nbsp word", "a\u00a0b", []string{"a", "\u00a0b"}},
		{"ideographic spaces", "a\u3000\u3000b", []string{"a", "\u3000", "\u3000b"}},
		{"vertical tab form feed", "a\v\fb", []string{"a", "\v", "\fb"}},
		{"NEL is space not newline", "a\u0085\nb", []string{"a", "\u0085\n", "b"}},
		{"line separator", "a\u2028b", []string{"a", "\u2028b"}},
		{"tab punct", "a\t!b", []string{"a", "\t", "!b"}},
		{"nbsp punct", "\u00a0!", []string{"\u00a0", "!"}},

		// Punctuation: ?[^\s\p{L}\p{N}]+[\r\n]*.
		{"dot newlines", "x.\n\ny", []string{"x", ".\n\n", "y"}},
		{"dot space newline", "x. \ny", []string{"x", ".", " \n", "y"}},
		{"dot CRLF", "end.\r\n", []string{"end", ".\r\n"}},
		{"dot CRLF CRLF", "a.\r\n\r\nb", []string{"a", ".\r\n\r\n", "b"}},
		{"space bangs", "a !!b", []string{"a", " !!", "b"}},
		{"punct glued to word", "a!b", []string{"a", "!b"}},
		{"ellipsis newline", "...\n", []string{"...\n"}},
		{"dollar digits", "$100", []string{"$", "1", "0", "0"}},

		// Numbers: one character each.
		{"decimal", "3.14", []string{"3", ".", "1", "4"}},
		{"date", "2026-11-26", []string{"2", "0", "2", "6", "-", "1", "1", "-", "2", "6"}},
		{"letters digits letters", "abc123def", []string{"abc", "1", "2", "3", "def"}},
		{"superscripts", "x²³", []string{"x", "²", "³"}},
		{"arabic-indic digits", "١٢٣", []string{"١", "٢", "٣"}},
		{"roman numeral", "abⅫ", []string{"ab", "Ⅻ"}},

		// Scripts, emoji, marks.
		{"cyrillic", "Привет мир", []string{"Привет", " мир"}},
		{"CJK and latin", "Qwen1.5开源MoE模型", []string{"Qwen", "1", ".", "5", "开源MoE模型"}},
		{"emoji", "emoji 🤖🚀 done", []string{"emoji", " 🤖🚀", " done"}},
		{"emoji before word", "🤖abc", []string{"🤖abc"}},
		{"emoji after word", "a🤖", []string{"a", "🤖"}},
		{"combining mark alone", "x\u0301", []string{"x", "\u0301"}},
		{"combining mark then letter", "x\u0301y", []string{"x", "\u0301y"}},
		{"devanagari", "नमस्ते", []string{"नमस", "्त", "े"}},
		{"zero width space", "a\u200bb", []string{"a", "\u200bb"}},

		// Invalid UTF-8: each bad byte is a punctuation-like character.
		{"invalid byte before letter", "a\xffb", []string{"a", "\xffb"}},
		{"invalid bytes", "\xff\xfe", []string{"\xff\xfe"}},
		{"space invalid", " \xff", []string{" \xff"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := preTokenize(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("preTokenize(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
			if diff := cmp.Diff(tc.want, oracleSplit(tc.in)); diff != "" {
				t.Errorf("oracle(%q) disagrees with the hand-derived split (-want +oracle):\n%s", tc.in, diff)
			}
		})
	}
}

// A small backtracking regex matcher, independent of the hand-written
// scanner, used as an oracle: it runs the Qwen2 pattern as a tree of
// alternation, concatenation, greedy repetition and negative lookahead,
// exploring alternatives in order as Oniguruma does.
type rxNode struct {
	kind   int // rxClass, rxSeq, rxAlt, rxRep, rxNotAhead
	class  func(rune) bool
	subs   []*rxNode
	lo, hi int // repetition bounds, hi < 0 for unbounded
}

const (
	rxClass = iota
	rxSeq
	rxAlt
	rxRep
	rxNotAhead
)

func rxC(f func(rune) bool) *rxNode { return &rxNode{kind: rxClass, class: f} }
func rxS(subs ...*rxNode) *rxNode   { return &rxNode{kind: rxSeq, subs: subs} }
func rxA(subs ...*rxNode) *rxNode   { return &rxNode{kind: rxAlt, subs: subs} }
func rxR(n *rxNode, lo, hi int) *rxNode {
	return &rxNode{kind: rxRep, subs: []*rxNode{n}, lo: lo, hi: hi}
}
func rxNot(n *rxNode) *rxNode { return &rxNode{kind: rxNotAhead, subs: []*rxNode{n}} }
func rxLit(r rune) *rxNode    { return rxC(func(c rune) bool { return c == r }) }
func rxFold(r rune) *rxNode   { return rxC(func(c rune) bool { return sameFold(c, r) }) }
func rxStr(fold bool, s string) *rxNode {
	var subs []*rxNode
	for _, r := range s {
		if fold {
			subs = append(subs, rxFold(r))
		} else {
			subs = append(subs, rxLit(r))
		}
	}
	return rxS(subs...)
}

// sameFold reports whether a and b are in the same simple case-folding
// orbit (Go's unicode.SimpleFold, which has s ~ S ~ ſ and k ~ K ~ K).
func sameFold(a, b rune) bool {
	for r := unicode.SimpleFold(b); ; r = unicode.SimpleFold(r) {
		if r == a {
			return true
		}
		if r == b {
			return a == b
		}
	}
}

var (
	rxIsL   = unicode.IsLetter
	rxIsN   = unicode.IsNumber
	rxIsS   = unicode.IsSpace
	rxIsNL  = func(r rune) bool { return r == '\r' || r == '\n' }
	rxQwen2 = rxA(
		rxS(rxLit('\''), rxA(rxStr(true, "s"), rxStr(true, "t"), rxStr(true, "re"), rxStr(true, "ve"), rxStr(true, "m"), rxStr(true, "ll"), rxStr(true, "d"))),
		rxS(rxR(rxC(func(r rune) bool { return !rxIsNL(r) && !rxIsL(r) && !rxIsN(r) }), 0, 1), rxR(rxC(rxIsL), 1, -1)),
		rxC(rxIsN),
		rxS(rxR(rxLit(' '), 0, 1), rxR(rxC(func(r rune) bool { return !rxIsS(r) && !rxIsL(r) && !rxIsN(r) }), 1, -1), rxR(rxC(rxIsNL), 0, -1)),
		rxS(rxR(rxC(rxIsS), 0, -1), rxR(rxC(rxIsNL), 1, -1)),
		rxS(rxR(rxC(rxIsS), 1, -1), rxNot(rxC(func(r rune) bool { return !rxIsS(r) }))),
		rxR(rxC(rxIsS), 1, -1),
	)
)

// rxMatch matches n at rs[i:] and calls k with each possible end, in
// backtracking order, until k accepts.
func rxMatch(n *rxNode, rs []rune, i int, k func(int) bool) bool {
	switch n.kind {
	case rxClass:
		return i < len(rs) && n.class(rs[i]) && k(i+1)
	case rxSeq:
		var step func(j, at int) bool
		step = func(j, at int) bool {
			if j == len(n.subs) {
				return k(at)
			}
			return rxMatch(n.subs[j], rs, at, func(e int) bool { return step(j+1, e) })
		}
		return step(0, i)
	case rxAlt:
		for _, s := range n.subs {
			if rxMatch(s, rs, i, k) {
				return true
			}
		}
		return false
	case rxRep:
		var rep func(count, at int) bool
		rep = func(count, at int) bool {
			if n.hi < 0 || count < n.hi {
				if rxMatch(n.subs[0], rs, at, func(e int) bool { return e > at && rep(count+1, e) }) {
					return true
				}
			}
			return count >= n.lo && k(at)
		}
		return rep(0, i)
	case rxNotAhead:
		if rxMatch(n.subs[0], rs, i, func(int) bool { return true }) {
			return false
		}
		return k(i)
	}
	panic("bad node")
}

// oracleSplit is Split(pattern, Isolated) computed with the oracle: matches
// found left to right, each followed by a search from its end; the gaps
// between matches (there are none for this pattern) are pieces too.
func oracleSplit(s string) []string {
	var rs []rune
	var off []int
	for i, r := range s {
		rs = append(rs, r)
		off = append(off, i)
	}
	off = append(off, len(s))
	var out []string
	pos := 0
	for pos < len(rs) {
		found := false
		for start := pos; start < len(rs); start++ {
			end := -1
			rxMatch(rxQwen2, rs, start, func(e int) bool { end = e; return true })
			if end > start {
				if start > pos {
					out = append(out, s[off[pos]:off[start]])
				}
				out = append(out, s[off[start]:off[end]])
				pos, found = end, true
				break
			}
		}
		if !found {
			out = append(out, s[off[pos]:])
			break
		}
	}
	return out
}

// interesting characters for the differential test: every class and every
// special case the pattern has.
var preTokAlphabet = []string{
	" ", " ", " ", "\t", "\n", "\r", "\v", "\f", "\u00a0", "\u0085", "\u2028", "\u3000",
	"a", "Z", "é", "中", "ǅ", "s", "S", "ſ", "t", "T", "r", "e", "E", "v", "m", "l", "L", "d", "K",
	"'", "'", "'", "1", "²", "Ⅻ", "!", ".", "-", "🤖", "\u0301", "\u200b", "\xff", "\xe2\x82",
}

func randomPreTokText(rng *rand.Rand, maxLen int) string {
	var b strings.Builder
	n := rng.IntN(maxLen + 1)
	for range n {
		b.WriteString(preTokAlphabet[rng.IntN(len(preTokAlphabet))])
	}
	return b.String()
}

func TestPreTokenizeMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 30000
	if testing.Short() {
		n = 3000
	}
	for range n {
		s := randomPreTokText(rng, 14)
		if diff := cmp.Diff(oracleSplit(s), preTokenize(s)); diff != "" {
			t.Fatalf("preTokenize(%q) differs from the backtracking oracle (-oracle +got):\n%s", s, diff)
		}
	}
}

func FuzzPreTokenize(f *testing.F) {
	for _, s := range []string{"", "Hello world", "don't I'LL we've", "a \n\n  b", "x'ſx", "  1", "a\r\n\r\n", "🤖abc \xff", "नमस्ते", "\t\t!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pieces := preTokenize(s)
		if strings.Join(pieces, "") != s {
			t.Fatalf("pieces %q do not concatenate to %q", pieces, s)
		}
		for _, p := range pieces {
			if p == "" {
				t.Fatalf("empty piece in %q", pieces)
			}
		}
		if utf8.RuneCountInString(s) > 200 {
			return // the oracle backtracks in quadratic time on long runs
		}
		if diff := cmp.Diff(oracleSplit(s), pieces); diff != "" {
			t.Fatalf("preTokenize(%q) differs from the backtracking oracle (-oracle +got):\n%s", s, diff)
		}
	})
}
