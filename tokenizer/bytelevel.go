package tokenizer

import (
	"unicode/utf8"
)

// The byte-level alphabet of GPT-2 (and of every tokenizer with a ByteLevel
// pre-tokenizer): each of the 256 byte values is shown as one printable
// character, so that BPE works on strings without control characters or
// spaces. Printable Latin-1 bytes stand for themselves; the 68 others are
// mapped, in increasing byte order, to U+0100, U+0101, and so on.
var (
	byteToRune [256]rune
	runeToByte map[rune]byte
)

func init() {
	runeToByte = make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		r := rune(b)
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if !printable {
			r = next
			next++
		}
		byteToRune[b] = r
		runeToByte[r] = byte(b)
	}
}

// byteLevelString maps raw bytes to their byte-level representation
// ("Ġthe" for " the").
func byteLevelString(s string) string {
	buf := make([]rune, 0, len(s))
	for i := 0; i < len(s); i++ {
		buf = append(buf, byteToRune[s[i]])
	}
	return string(buf)
}

// byteLevelBytes maps a byte-level token back to the raw bytes it stands
// for. ok is false when the token holds a character outside the byte-level
// alphabet (the ByteLevel decoder then keeps the token's UTF-8 as is).
func byteLevelBytes(tok string) (b []byte, ok bool) {
	b = make([]byte, 0, len(tok))
	for _, r := range tok {
		c, found := runeToByte[r]
		if !found {
			return nil, false
		}
		b = append(b, c)
	}
	return b, true
}

// appendLossyUTF8 appends b to dst as valid UTF-8, replacing each maximal
// ill-formed subpart by U+FFFD — the "substitution of maximal subparts"
// practice of the Unicode standard (§3.9), which is what Rust's
// String::from_utf8_lossy does (and so the Hugging Face ByteLevel decoder).
// Go's own conversions substitute per byte instead.
func appendLossyUTF8(dst []byte, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		n := validPrefix(b[i:])
		if n > 0 {
			dst = append(dst, b[i:i+n]...)
			i += n
			continue
		}
		dst = append(dst, "\uFFFD"...)
		i += -n
	}
	return dst
}

// validPrefix looks at the sequence starting at a non-ASCII byte b[0]. It
// returns the length of a complete, well-formed sequence, or minus the
// length of the maximal subpart to replace (at least one byte).
func validPrefix(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // range of the second byte
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return -1
	}
	for k := 1; k <= need; k++ {
		if k >= len(b) {
			return -k
		}
		l, h := byte(0x80), byte(0xBF)
		if k == 1 {
			l, h = lo, hi
		}
		if b[k] < l || b[k] > h {
			return -k
		}
	}
	return need + 1
}
