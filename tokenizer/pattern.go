package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// pattern is what Split, Replace and the Replace decoder search for: a
// literal string or a regex.
type pattern interface {
	// matches appends the [start, end) byte ranges of the non-overlapping
	// matches in s, leftmost first. Empty matches are allowed.
	matches(dst [][2]int, s string) [][2]int
}

// stringPattern is a literal; an empty one matches nowhere.
type stringPattern string

func (p stringPattern) matches(dst [][2]int, s string) [][2]int {
	if p == "" {
		return dst
	}
	for i := 0; ; {
		j := strings.Index(s[i:], string(p))
		if j < 0 {
			return dst
		}
		dst = append(dst, [2]int{i + j, i + j + len(p)})
		i += j + len(p)
	}
}

// regexPattern is a regex of tokenizer.json. Hugging Face runs these with
// Oniguruma; regexp2 (a port of .NET's backtracking engine) agrees with it
// on the constructs tokenizer files use — lookaround, (?i:), \p{..}, \s —
// once \p{..} classes are widened to the Unicode tables of Hugging Face
// (rewritePattern).
type regexPattern struct {
	src string
	re  *regexp2.Regexp
}

// compilePattern returns the hand-written matcher of src when there is one
// (handPatterns), else the regexp2 pattern.
func compilePattern(src string) (pattern, error) {
	if at, ok := handPatterns[src]; ok {
		return &handPattern{src: src, at: at}, nil
	}
	return compileRegex(src)
}

func compileRegex(src string) (*regexPattern, error) {
	re, err := regexp2.Compile(rewritePattern(src), regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", truncate(src, 80), err)
	}
	return &regexPattern{src: src, re: re}, nil
}

func (p *regexPattern) matches(dst [][2]int, s string) [][2]int {
	if s == "" {
		return dst
	}
	rs := make([]rune, 0, len(s))
	off := make([]int, 0, len(s)+1) // byte offset of each rune, then len(s)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		rs = append(rs, r)
		off = append(off, i)
		i += w
	}
	off = append(off, len(s))
	m, err := p.re.FindRunesMatch(rs)
	for err == nil && m != nil {
		dst = append(dst, [2]int{off[m.Index], off[m.Index+m.Length]})
		m, err = p.re.FindNextMatch(m)
	}
	return dst
}

// rewritePattern widens \p{X} and \P{X} for the general categories whose
// Unicode tables Hugging Face has newer than Go's: outside a class \p{L}
// becomes [\p{L}<extra ranges>]; inside one the ranges are added to it.
func rewritePattern(src string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src):
			if (src[i+1] == 'p' || src[i+1] == 'P') && i+2 < len(src) && src[i+2] == '{' {
				end := strings.IndexByte(src[i:], '}')
				if end > 0 {
					cat := src[i+3 : i+end]
					extra := hfClassExtra(cat)
					neg := src[i+1] == 'P'
					if extra != nil && !(neg && inClass) {
						ranges := extraRanges(extra)
						switch {
						case inClass:
							b.WriteString(src[i : i+end+1])
							b.WriteString(ranges)
						case neg:
							b.WriteString(`[^\p{` + cat + `}` + ranges + `]`)
						default:
							b.WriteString(`[\p{` + cat + `}` + ranges + `]`)
						}
						i += end
						continue
					}
				}
			}
			b.WriteByte(c)
			b.WriteByte(src[i+1])
			i++
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			if i+1 < len(src) && src[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(src) && src[i+1] == ']' { // a leading ] is literal
				b.WriteByte(']')
				i++
			}
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// extraRanges writes code point ranges for a regexp2 character class.
func extraRanges(rs runeRanges) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, `\x{%X}`, r.lo)
		if r.hi != r.lo {
			fmt.Fprintf(&b, `-\x{%X}`, r.hi)
		}
	}
	return b.String()
}
