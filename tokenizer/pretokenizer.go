package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// piece is a pre-token: a part of the normalized text. first marks the
// piece that starts the input (the Metaspace prepend_scheme "first").
type piece struct {
	s     string
	first bool
}

// preTokenizer is one pre-tokenizer of tokenizer.json: it splits each piece
// further. ByteLevel is not one: it is the last step of a pipeline and
// tells the model that pieces are bytes (see pipeline).
type preTokenizer interface {
	split(dst []piece, p piece) []piece
}

// behavior is a SplitDelimiterBehavior: what happens to the matches.
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

var behaviors = map[string]behavior{
	"Removed": removed, "Isolated": isolated, "MergedWithPrevious": mergedWithPrevious,
	"MergedWithNext": mergedWithNext, "Contiguous": contiguous,
}

// span is a part of a piece and whether it is a match.
type span struct {
	start, end int
	match      bool
}

// splitSpans appends to dst the sub-pieces of p given the spans that tile
// it, as Hugging Face's NormalizedString::split does. Empty pieces are
// dropped.
func splitSpans(dst []piece, p piece, spans []span, b behavior) []piece {
	var out []span
	switch b {
	case removed:
		for _, s := range spans {
			if !s.match {
				out = append(out, s)
			}
		}
	case isolated:
		out = spans
	case mergedWithPrevious:
		prevMatch := false
		for _, s := range spans {
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case mergedWithNext:
		prevMatch := false
		for k := len(spans) - 1; k >= 0; k-- {
			s := spans[k]
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = s.start
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case contiguous:
		prevMatch := false
		for _, s := range spans {
			if s.match == prevMatch && len(out) > 0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	}
	for _, s := range out {
		if s.end > s.start {
			dst = append(dst, piece{p.s[s.start:s.end], p.first && s.start == 0})
		}
	}
	return dst
}

// matchSpans turns the matches of a pattern in s into spans that tile s.
func matchSpans(ms [][2]int, n int, invert bool) []span {
	spans := make([]span, 0, 2*len(ms)+1)
	prev := 0
	for _, m := range ms {
		if m[0] > prev {
			spans = append(spans, span{prev, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev < n {
		spans = append(spans, span{prev, n, invert})
	}
	return spans
}

// charSpans makes every character for which is returns true a match of its
// own, as a character predicate pattern does in Hugging Face.
func charSpans(s string, is func(rune) bool) []span {
	var spans []span
	prev := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if is(r) {
			if i > prev {
				spans = append(spans, span{prev, i, false})
			}
			spans = append(spans, span{i, i + w, true})
			prev = i + w
		}
		i += w
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	return spans
}

// splitPre is Split: a pattern, a behavior, and invert.
type splitPre struct {
	pat    pattern
	b      behavior
	invert bool
}

func (sp splitPre) split(dst []piece, p piece) []piece {
	if hp, ok := sp.pat.(*handPattern); ok && sp.b == isolated {
		// The common case (every real file's Split), without building
		// spans: matches and the gaps between them, in order.
		s, gap := p.s, 0
		for i := 0; i < len(s); {
			j := hp.at(s, i)
			if j <= i {
				_, w := utf8.DecodeRuneInString(s[i:])
				i += w
				continue
			}
			if gap < i {
				dst = append(dst, piece{s[gap:i], p.first && gap == 0})
			}
			dst = append(dst, piece{s[i:j], p.first && i == 0})
			i, gap = j, j
		}
		if gap < len(s) {
			dst = append(dst, piece{s[gap:], p.first && gap == 0})
		}
		return dst
	}
	return splitSpans(dst, p, matchSpans(sp.pat.matches(nil, p.s), len(p.s), sp.invert), sp.b)
}

// charSplitPre splits at characters of a class: Punctuation, Digits,
// WhitespaceSplit, Metaspace's split.
type charSplitPre struct {
	is func(rune) bool
	b  behavior
}

func (cs charSplitPre) split(dst []piece, p piece) []piece {
	return splitSpans(dst, p, charSpans(p.s, cs.is), cs.b)
}

// metaspacePre is Metaspace: spaces become the replacement character,
// which is prepended to a piece as prepend_scheme says, and, with split,
// pieces are cut before each replacement character.
type metaspacePre struct {
	repl    rune
	prepend string // "always", "never" or "first"
	splitAt bool
}

func (m metaspacePre) split(dst []piece, p piece) []piece {
	rs := string(m.repl)
	s := strings.ReplaceAll(p.s, " ", rs)
	// Hugging Face's prepend needs a character to attach to: an empty piece
	// stays empty.
	if s != "" && !strings.HasPrefix(s, rs) && (m.prepend == "always" || (m.prepend == "first" && p.first)) {
		s = rs + s
	}
	q := piece{s, p.first}
	if !m.splitAt {
		if s == "" {
			return dst
		}
		return append(dst, q)
	}
	return splitSpans(dst, q, charSpans(s, func(r rune) bool { return r == m.repl }), mergedWithNext)
}

// seqPre is Sequence: each member splits every piece the previous made.
type seqPre []preTokenizer

func (q seqPre) split(dst []piece, p piece) []piece {
	cur := []piece{p}
	var next []piece
	for k, pt := range q {
		if k == len(q)-1 {
			// The last step appends straight to dst.
			for _, c := range cur {
				dst = pt.split(dst, c)
			}
			return dst
		}
		next = next[:0]
		for _, c := range cur {
			next = pt.split(next, c)
		}
		cur, next = next, cur
	}
	return append(dst, cur...)
}

// prefixSpacePre is the add_prefix_space of ByteLevel: a space before
// every piece that does not start with one.
type prefixSpacePre struct{}

func (prefixSpacePre) split(dst []piece, p piece) []piece {
	if p.s != "" && !strings.HasPrefix(p.s, " ") {
		p.s = " " + p.s
	}
	return append(dst, p)
}

// isNumeric is Rust's char::is_numeric (Nd, Nl, No), which Digits uses.
func isNumeric(r rune) bool { return isNumber(r) }

// isPunctuation is what the Punctuation pre-tokenizer splits at: ASCII
// punctuation (symbols included) and Unicode punctuation.
func isPunctuation(r rune) bool {
	if r < utf8.RuneSelf {
		return unicode.IsPunct(r) || unicode.IsSymbol(r)
	}
	return isPunct(r)
}

// gpt2Pattern is the regex of ByteLevel with use_regex (GPT-2's).
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// whitespacePattern is the Whitespace pre-tokenizer's regex; its matches
// are the pieces.
const whitespacePattern = `\w+|[^\w\s]+`
