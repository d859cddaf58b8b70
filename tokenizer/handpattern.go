package tokenizer

import "unicode/utf8"

// Hand-written matchers for Split regexes of real tokenizer files, many
// times faster than running them through regexp2. Each is checked against
// regexp2 (with Hugging Face's Unicode tables) by FuzzHandPatterns and on
// the corpus, and against Hugging Face itself through the goldens.

// The three Split patterns of DeepSeek-V3 (and V2, R1), exactly as in
// tokenizer.json.
const (
	deepseekDigits = `\p{N}{1,3}`
	deepseekCJK    = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
	deepseekMain   = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
)

// handPattern is a pattern given by a function that returns the end of the
// match that starts at s[i], or -1 when none starts there. Matches are
// never empty.
type handPattern struct {
	src string
	at  func(s string, i int) int
}

// handPatterns maps the regex source of tokenizer.json to its matcher.
var handPatterns = map[string]func(s string, i int) int{
	qwen2Pattern:   func(s string, i int) int { return nextSplit(s, i, 1) },
	llama3Pattern:  func(s string, i int) int { return nextSplit(s, i, 3) },
	deepseekDigits: matchDigits3,
	deepseekCJK:    matchCJK,
	deepseekMain:   matchDeepseek,
}

func (p *handPattern) matches(dst [][2]int, s string) [][2]int {
	for i := 0; i < len(s); {
		if j := p.at(s, i); j > i {
			dst = append(dst, [2]int{i, j})
			i = j
			continue
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return dst
}

// decode returns the character at s[i] and its width; an invalid byte is
// U+FFFD of width 1, which is what regexp2 sees for it.
func decode(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// matchDigits3 is \p{N}{1,3}.
func matchDigits3(s string, i int) int {
	j := i
	for n := 0; n < 3 && j < len(s); n++ {
		r, w := decode(s, j)
		if !isNumber(r) {
			break
		}
		j += w
	}
	if j == i {
		return -1
	}
	return j
}

func isDeepseekCJK(r rune) bool {
	return (r >= 0x4e00 && r <= 0x9fa5) || (r >= 0x3040 && r <= 0x309f) || (r >= 0x30a0 && r <= 0x30ff)
}

// matchCJK is [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+.
func matchCJK(s string, i int) int {
	j := i
	for j < len(s) {
		r, w := decode(s, j)
		if !isDeepseekCJK(r) {
			break
		}
		j += w
	}
	if j == i {
		return -1
	}
	return j
}

func isASCIIPunct(r rune) bool {
	return r < utf8.RuneSelf && r > ' ' && r != 0x7f && !('0' <= r && r <= '9') && !('A' <= r && r <= 'Z') && !('a' <= r && r <= 'z')
}

func isASCIILetter(r rune) bool { return ('A' <= r && r <= 'Z') || ('a' <= r && r <= 'z') }

// runWhile returns the end of the run of characters from i that satisfy
// is.
func runWhile(s string, i int, is func(rune) bool) int {
	for i < len(s) {
		r, w := decode(s, i)
		if !is(r) {
			break
		}
		i += w
	}
	return i
}

func isLetterOrMark(r rune) bool  { return isLetter(r) || isMark(r) }
func isPunctOrSymbol(r rune) bool { return isPunct(r) || isSymbol(r) }

// matchDeepseek is deepseekMain: its alternatives tried in order, as a
// backtracking engine does.
func matchDeepseek(s string, i int) int {
	r, w := decode(s, i)
	// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
	if isASCIIPunct(r) && i+w < len(s) {
		if r2, _ := decode(s, i+w); isASCIILetter(r2) {
			return runWhile(s, i+w, isASCIILetter)
		}
	}
	// [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : the optional character first,
	// dropped on backtracking.
	if r != '\r' && r != '\n' && !isLetter(r) && !isPunct(r) && !isSymbol(r) && i+w < len(s) {
		if r2, _ := decode(s, i+w); isLetterOrMark(r2) {
			return runWhile(s, i+w, isLetterOrMark)
		}
	}
	if isLetterOrMark(r) {
		return runWhile(s, i, isLetterOrMark)
	}
	// ?[\p{P}\p{S}]+[\r\n]*
	if r == ' ' && i+1 < len(s) {
		if r2, _ := decode(s, i+1); isPunctOrSymbol(r2) {
			return crlfRun(s, runWhile(s, i+1, isPunctOrSymbol))
		}
	}
	if isPunctOrSymbol(r) {
		return crlfRun(s, runWhile(s, i, isPunctOrSymbol))
	}
	if !isWhite(r) {
		return -1
	}
	// The rest starts with white space: e is the end of the run.
	e := i
	lastNL, lastStart := -1, i
	for e < len(s) {
		r, w := decode(s, e)
		if !isWhite(r) {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = e
		}
		lastStart = e
		e += w
	}
	// \s*[\r\n]+
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S)
	if e == len(s) {
		return e
	}
	if lastStart > i {
		return lastStart
	}
	// \s+
	return e
}
