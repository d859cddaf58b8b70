package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// qwen2Pattern is the Split pre-tokenizer regex of Qwen2 (and Qwen1.5,
// Qwen2.5, Qwen3) tokenizers, exactly as it appears in tokenizer.json.
// Hugging Face runs it with Oniguruma, a backtracking engine; nextSplit
// implements it (and llama3Pattern, the same with \p{N}{1,3}) by hand, many
// times faster than a regex engine.
const qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// Character classes the pattern distinguishes. They partition all
// characters: \p{L}, \p{N}, \s (Unicode White_Space, which is what
// Oniguruma's \s matches on UTF-8), and everything else, invalid UTF-8 bytes
// included.
const (
	classOther = iota
	classLetter
	classNumber
	classSpace
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		asciiClass[r] = uint8(slowClass(r))
	}
}

func slowClass(r rune) int {
	switch {
	case isLetter(r):
		return classLetter
	case isNumber(r):
		return classNumber
	case unicode.IsSpace(r): // White_Space, the same set as Oniguruma's Unicode \s
		return classSpace
	}
	return classOther
}

// charAt decodes the character at s[i] and returns it, its width and class.
// An invalid byte is one character of width 1 and class other.
func charAt(s string, i int) (rune, int, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return rune(c), 1, int(asciiClass[c])
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && w == 1 {
		return r, 1, classOther
	}
	return r, w, slowClass(r)
}

// classAt returns the class of the character at s[i], or -1 at the end.
func classAt(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	_, _, c := charAt(s, i)
	return c
}

// runOf returns the end of the run of characters of class cls that starts
// at i.
func runOf(s string, i, cls int) int {
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf {
			if int(asciiClass[b]) != cls {
				break
			}
			i++
			continue
		}
		_, w, c := charAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

// foldsTo reports whether r matches the ASCII lower-case letter l under
// Oniguruma's Unicode case folding. Besides the upper-case letter, U+017F
// LATIN SMALL LETTER LONG S folds to 's' (and U+212A KELVIN SIGN to 'k',
// which the pattern does not use).
func foldsTo(r rune, l byte) bool {
	switch {
	case r == rune(l), r == rune(l)-'a'+'A':
		return true
	case l == 's':
		return r == 0x17F
	case l == 'k':
		return r == 0x212A
	}
	return false
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[i], which holds
// an apostrophe, and returns the end of the match or -1.
func contraction(s string, i int) int {
	j := i + 1
	if j >= len(s) {
		return -1
	}
	r, w, _ := charAt(s, j)
	j += w
	switch {
	case foldsTo(r, 's'), foldsTo(r, 't'), foldsTo(r, 'm'), foldsTo(r, 'd'):
		return j
	case foldsTo(r, 'r'), foldsTo(r, 'v'):
		if j < len(s) {
			if r2, w2, _ := charAt(s, j); foldsTo(r2, 'e') {
				return j + w2
			}
		}
	case foldsTo(r, 'l'):
		if j < len(s) {
			if r2, w2, _ := charAt(s, j); foldsTo(r2, 'l') {
				return j + w2
			}
		}
	}
	return -1
}

// crlfRun returns the end of the run of '\r' and '\n' starting at i.
func crlfRun(s string, i int) int {
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// nextQwen2 returns the end of the match of qwen2Pattern that starts at
// s[i] (i < len(s)).
func nextQwen2(s string, i int) int { return nextSplit(s, i, 1) }

// nextSplit returns the end of the match of qwen2Pattern (digits 1) or
// llama3Pattern (digits 3) that starts at s[i] (i < len(s)). The pattern
// matches a non-empty string at every position, so matches tile the input.
// Alternatives are tried in order, as a backtracking engine does, and the
// first that matches wins.
func nextSplit(s string, i, digits int) int {
	r, w, cls := charAt(s, i)

	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if end := contraction(s, i); end >= 0 {
			return end
		}
	}

	// [^\r\n\p{L}\p{N}]?\p{L}+ : the optional character is tried first, and
	// dropped on backtracking when no letter follows it.
	if cls == classLetter {
		return runOf(s, i, classLetter)
	}
	if r != '\r' && r != '\n' && cls != classNumber && classAt(s, i+w) == classLetter {
		return runOf(s, i+w, classLetter)
	}

	// \p{N} or \p{N}{1,3}
	if cls == classNumber {
		j := i + w
		for n := 1; n < digits && j < len(s); n++ {
			_, w2, c2 := charAt(s, j)
			if c2 != classNumber {
				break
			}
			j += w2
		}
		return j
	}

	// ?[^\s\p{L}\p{N}]+[\r\n]*
	if r == ' ' && classAt(s, i+1) == classOther {
		return crlfRun(s, runOf(s, i+1, classOther))
	}
	if cls == classOther {
		return crlfRun(s, runOf(s, i, classOther))
	}

	// What is left starts with whitespace. e is the end of the run.
	e := i
	lastNL, lastStart := -1, i
	for e < len(s) {
		_, w, c := charAt(s, e)
		if c != classSpace {
			break
		}
		if s[e] == '\r' || s[e] == '\n' {
			lastNL = e
		}
		lastStart = e
		e += w
	}

	// \s*[\r\n]+ : \s* takes the whole run, then gives characters back until
	// [\r\n]+ can match: the match ends after the run's last line break.
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S) : at the end of the text the whole run; otherwise the run
	// gives its last character back so that whitespace, not \S, follows —
	// possible only when the run has two characters or more.
	if e == len(s) {
		return e
	}
	if lastStart > i {
		return lastStart
	}
	// \s+
	return e
}

// splitQwen2 appends to dst the pieces of s that the Split pre-tokenizer
// with the Qwen2 pattern and the Isolated behaviour produces. The pieces
// concatenate to s.
func splitQwen2(dst []string, s string) []string {
	for i := 0; i < len(s); {
		j := nextQwen2(s, i)
		dst = append(dst, s[i:j])
		i = j
	}
	return dst
}

// preTokenize returns the pre-token pieces of the normalized text s under
// the Qwen2 pattern. It exists for tests and debugging; Encode does the same
// work internally.
func preTokenize(s string) []string { return splitQwen2(nil, s) }
