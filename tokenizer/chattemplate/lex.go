package chattemplate

import (
	"fmt"
	"strings"
	"unicode"
)

// A segment of template source: literal text or one tag.
type segKind int

const (
	segText    segKind = iota
	segVar             // {{ ... }}
	segBlock           // {% ... %}
	segComment         // {# ... #}
)

type segment struct {
	kind       segKind
	text       string // the literal text, or the tag's inner source
	line       int    // line where the segment starts (1-based)
	trimLeft   bool   // "{%-": strip all whitespace before the tag
	trimRight  bool   // "-%}": strip all whitespace after the tag
	keepLeft   bool   // "{%+": no lstrip_blocks for this tag
	keepRight  bool   // "+%}": no trim_blocks for this tag
	tokens     []token
	tokenIndex int
}

// split cuts src into text and tag segments and applies Jinja's whitespace
// control as transformers configures it: trim_blocks (the first newline
// after a block or comment tag is removed), lstrip_blocks (spaces and tabs
// from the start of a line up to a block or comment tag are removed), and
// the explicit "-" markers, which strip all whitespace on their side.
func split(src string) ([]segment, error) {
	var segs []segment
	line := 1
	i := 0
	for i < len(src) {
		j := indexTagOpen(src, i)
		if j < 0 {
			segs = append(segs, segment{kind: segText, text: src[i:], line: line})
			break
		}
		if j > i {
			segs = append(segs, segment{kind: segText, text: src[i:j], line: line})
			line += strings.Count(src[i:j], "\n")
		}
		var kind segKind
		var closeTag string
		switch src[j+1] {
		case '{':
			kind, closeTag = segVar, "}}"
		case '%':
			kind, closeTag = segBlock, "%}"
		default:
			kind, closeTag = segComment, "#}"
		}
		seg := segment{kind: kind, line: line}
		k := j + 2
		if k < len(src) && src[k] == '-' {
			seg.trimLeft = true
			k++
		} else if k < len(src) && src[k] == '+' && kind != segVar {
			seg.keepLeft = true
			k++
		}
		var end int
		if kind == segComment {
			e := strings.Index(src[k:], closeTag)
			if e < 0 {
				return nil, fmt.Errorf("line %d: unclosed comment", line)
			}
			end = k + e
		} else {
			var err error
			seg.tokens, end, err = lexTag(src, k, closeTag, line)
			if err != nil {
				return nil, err
			}
		}
		inner := src[k:end]
		if strings.HasSuffix(inner, "-") {
			seg.trimRight = true
			inner = inner[:len(inner)-1]
		} else if strings.HasSuffix(inner, "+") && kind != segVar {
			seg.keepRight = true
			inner = inner[:len(inner)-1]
		}
		seg.text = inner
		line += strings.Count(src[j:end+2], "\n")
		segs = append(segs, seg)
		i = end + 2
		if kind == segBlock && isRawTag(seg.tokens) {
			e := strings.Index(src[i:], "endraw")
			if e < 0 {
				return nil, fmt.Errorf("line %d: raw without endraw", seg.line)
			}
			open := strings.LastIndex(src[:i+e], "{%")
			if open < i {
				return nil, fmt.Errorf("line %d: malformed endraw", seg.line)
			}
			segs = append(segs, segment{kind: segText, text: src[i:open], line: line})
			line += strings.Count(src[i:open], "\n")
			i = open
		}
	}
	applyWhitespace(segs)
	return segs, nil
}

func isRawTag(toks []token) bool {
	return len(toks) >= 1 && toks[0].kind == tkName && toks[0].s == "raw"
}

// indexTagOpen returns the index of the next "{{", "{%" or "{#" at or after i.
func indexTagOpen(src string, i int) int {
	for {
		j := strings.IndexByte(src[i:], '{')
		if j < 0 || i+j+1 >= len(src) {
			return -1
		}
		j += i
		if c := src[j+1]; c == '{' || c == '%' || c == '#' {
			return j
		}
		i = j + 1
	}
}

func applyWhitespace(segs []segment) {
	for i := range segs {
		s := &segs[i]
		if s.kind != segText {
			continue
		}
		if i+1 < len(segs) {
			n := segs[i+1]
			if n.trimLeft {
				s.text = strings.TrimRightFunc(s.text, unicode.IsSpace)
			} else if (n.kind == segBlock || n.kind == segComment) && !n.keepLeft {
				// lstrip_blocks: only when nothing but spaces/tabs precede
				// the tag on its line.
				k := len(s.text)
				for k > 0 && (s.text[k-1] == ' ' || s.text[k-1] == '\t') {
					k--
				}
				if k > 0 && s.text[k-1] == '\n' || k == 0 && i == 0 {
					s.text = s.text[:k]
				}
			}
		}
		if i > 0 {
			p := segs[i-1]
			if p.trimRight {
				s.text = strings.TrimLeftFunc(s.text, unicode.IsSpace)
			} else if (p.kind == segBlock || p.kind == segComment) && !p.keepRight {
				if strings.HasPrefix(s.text, "\r\n") {
					s.text = s.text[2:]
				} else if strings.HasPrefix(s.text, "\n") {
					s.text = s.text[1:]
				}
			}
		}
	}
}

// Expression tokens.
type tokKind int

const (
	tkName tokKind = iota
	tkString
	tkInt
	tkFloat
	tkOp
	tkEOF
)

type token struct {
	kind tokKind
	s    string
	i    int64
	f    float64
	line int
}

var ops3 = []string{"//", "**", "==", "!=", "<=", ">="}

// lexTag tokenizes a tag's content starting at i up to closeTag, and
// returns the tokens and the index where closeTag (with a preceding "-" or
// "+" marker) begins.
func lexTag(src string, i int, closeTag string, line int) ([]token, int, error) {
	var toks []token
	for {
		for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r') {
			if src[i] == '\n' {
				line++
			}
			i++
		}
		if i >= len(src) {
			return nil, 0, fmt.Errorf("line %d: unclosed tag, expected %q", line, closeTag)
		}
		if strings.HasPrefix(src[i:], closeTag) {
			return append(toks, token{kind: tkEOF, line: line}), i, nil
		}
		if (src[i] == '-' || src[i] == '+') && strings.HasPrefix(src[i+1:], closeTag) {
			// The marker stays in the tag's source; split reads it there.
			return append(toks, token{kind: tkEOF, line: line}), i + 1, nil
		}
		c := src[i]
		switch {
		case c == '_' || isLetter(c):
			j := i
			for j < len(src) && (src[j] == '_' || isLetter(src[j]) || isDigit(src[j])) {
				j++
			}
			toks = append(toks, token{kind: tkName, s: src[i:j], line: line})
			i = j
		case isDigit(c):
			j := i
			for j < len(src) && (isDigit(src[j]) || src[j] == '_') {
				j++
			}
			isFloat := false
			if j+1 < len(src) && src[j] == '.' && isDigit(src[j+1]) {
				isFloat = true
				j++
				for j < len(src) && isDigit(src[j]) {
					j++
				}
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && isDigit(src[k]) {
					isFloat = true
					for k < len(src) && isDigit(src[k]) {
						k++
					}
					j = k
				}
			}
			lit := strings.ReplaceAll(src[i:j], "_", "")
			t := token{line: line, s: lit}
			if isFloat {
				t.kind = tkFloat
				fmt.Sscan(lit, &t.f)
			} else {
				t.kind = tkInt
				fmt.Sscan(lit, &t.i)
			}
			toks = append(toks, t)
			i = j
		case c == '\'' || c == '"':
			s, j, err := lexString(src, i)
			if err != nil {
				return nil, 0, fmt.Errorf("line %d: %v", line, err)
			}
			line += strings.Count(src[i:j], "\n")
			toks = append(toks, token{kind: tkString, s: s, line: line})
			i = j
		default:
			op := ""
			for _, o := range ops3 {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune("+-*/%~()[]{},.:|=<>!;", rune(c)) {
					return nil, 0, fmt.Errorf("line %d: unexpected character %q", line, c)
				}
				op = string(c)
			}
			toks = append(toks, token{kind: tkOp, s: op, line: line})
			i += len(op)
		}
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// lexString reads a quoted string literal at src[i] with Python's escapes.
func lexString(src string, i int) (string, int, error) {
	q := src[i]
	var b strings.Builder
	j := i + 1
	for j < len(src) {
		c := src[j]
		if c == q {
			return b.String(), j + 1, nil
		}
		if c != '\\' || j+1 >= len(src) {
			b.WriteByte(c)
			j++
			continue
		}
		e := src[j+1]
		j += 2
		switch e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(e)
		case '0':
			b.WriteByte(0)
		case 'a':
			b.WriteByte(7)
		case 'b':
			b.WriteByte(8)
		case 'f':
			b.WriteByte(12)
		case 'v':
			b.WriteByte(11)
		case '\n':
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if j+n > len(src) {
				return "", 0, fmt.Errorf("truncated \\%c escape", e)
			}
			var r rune
			if _, err := fmt.Sscanf(src[j:j+n], "%x", &r); err != nil {
				return "", 0, fmt.Errorf("bad \\%c escape %q", e, src[j:j+n])
			}
			b.WriteRune(r)
			j += n
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}
