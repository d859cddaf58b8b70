package serve

import (
	"strings"
	"unicode/utf8"

	"github.com/moeforge/moeforge/tokenizer"
)

// TextDecoder turns generated token ids into text as they arrive. A
// byte-level BPE token can end inside a multi-byte UTF-8 character; those
// bytes are held back until the character is complete, and bytes that can
// never form one become U+FFFD (one per maximal invalid subsequence, as
// Hugging Face's decoder writes them), so the concatenated deltas equal
// decoding all ids at once. Stop strings are matched on the text: Add
// holds back a tail that could begin one, and reports when one appears
// (the text ends before it; the decoder is then finished).
type TextDecoder struct {
	Tok  *tokenizer.Tokenizer
	Stop []string
	// Skip lists token ids that produce no text (special tokens, as with
	// skip_special_tokens).
	Skip map[int]bool

	bytes []byte
	done  int // bytes already converted into text (whole characters)
	sent  int // bytes of text already returned
	text  string
}

// Add appends token id and returns the new text that is safe to show, and
// whether a stop string has been reached.
func (d *TextDecoder) Add(id int) (string, bool, error) {
	if d.Skip[id] {
		return "", false, nil
	}
	b, err := d.Tok.DecodeBytes([]int{id})
	if err != nil {
		return "", false, err
	}
	d.bytes = append(d.bytes, b...)
	// Only the new whole characters are converted: the bytes before done
	// end on a character boundary, so converting in pieces gives what
	// converting everything at once does.
	n := len(d.bytes) - IncompleteTail(d.bytes)
	if n > d.done {
		d.text += string(LossyUTF8(d.bytes[d.done:n]))
		d.done = n
	}
	for _, s := range d.Stop {
		if s == "" {
			continue
		}
		if i := strings.Index(d.text[min(d.sent, len(d.text)):], s); i >= 0 {
			end := min(d.sent, len(d.text)) + i
			delta := d.text[d.sent:end]
			d.sent = end
			d.text = d.text[:end]
			return delta, true, nil
		}
	}
	safe := len(d.text)
	for _, s := range d.Stop {
		for k := min(len(s)-1, len(d.text)); k > 0; k-- {
			if strings.HasSuffix(d.text, s[:k]) {
				safe = min(safe, len(d.text)-k)
				break
			}
		}
	}
	if safe <= d.sent {
		return "", false, nil
	}
	delta := d.text[d.sent:safe]
	d.sent = safe
	return delta, false, nil
}

// Flush returns what was held back (at the end of generation).
func (d *TextDecoder) Flush() string {
	d.text += string(LossyUTF8(d.bytes[d.done:]))
	d.done = len(d.bytes)
	rest := d.text[min(d.sent, len(d.text)):]
	d.sent = len(d.text)
	return rest
}

// Text is all the text returned so far.
func (d *TextDecoder) Text() string { return d.text[:min(d.sent, len(d.text))] }

// IncompleteTail returns the length of the trailing bytes of b that begin
// a UTF-8 character whose remaining bytes have not arrived yet.
func IncompleteTail(b []byte) int {
	for n := 1; n <= 3 && n <= len(b); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a lead byte: does the tail start a valid, unfinished character?
			if need := seqLen(c); need > n && validPrefix(b[len(b)-n:]) == n {
				return n
			}
			return 0
		}
	}
	return 0
}

// LossyUTF8 returns b with every maximal invalid subsequence replaced by
// U+FFFD (the Unicode "substitution of maximal subparts" practice).
func LossyUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			b = b[max(validPrefix(b), 1):]
			continue
		}
		out = append(out, b[:size]...)
		b = b[size:]
	}
	return out
}

// seqLen is the length of the UTF-8 sequence lead byte c starts (0: not a
// lead byte).
func seqLen(c byte) int {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 2
	case c >= 0xE0 && c <= 0xEF:
		return 3
	case c >= 0xF0 && c <= 0xF4:
		return 4
	}
	return 0
}

// validPrefix returns how many leading bytes of b are a prefix of some valid
// UTF-8 sequence (0 when b[0] cannot start one).
func validPrefix(b []byte) int {
	need := seqLen(b[0])
	if need == 0 {
		return 0
	}
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch b[0] {
	case 0xE0:
		lo = 0xA0
	case 0xED:
		hi = 0x9F
	case 0xF0:
		lo = 0x90
	case 0xF4:
		hi = 0x8F
	}
	n := 1
	for n < need && n < len(b) {
		c := b[n]
		if n > 1 {
			lo, hi = 0x80, 0xBF
		}
		if c < lo || c > hi {
			break
		}
		n++
	}
	return n
}
