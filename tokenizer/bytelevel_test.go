package tokenizer

import (
	"testing"
	"unicode/utf8"
)

func TestByteLevelAlphabet(t *testing.T) {
	tests := []struct {
		b    byte
		want rune
	}{
		{' ', 'Ġ'}, {'\n', 'Ċ'}, {'\r', 'č'}, {'\t', 'ĉ'}, {0, 'Ā'}, {'!', '!'}, {'~', '~'},
		{0x7F, 'ġ'}, {0x80, 'Ģ'}, {0xA0, 'ł'}, {0xA1, '¡'}, {0xAD, 'Ń'}, {0xFF, 'ÿ'},
	}
	for _, tc := range tests {
		if got := byteToRune[tc.b]; got != tc.want {
			t.Errorf("byteToRune[%#02x] = %q, want %q", tc.b, got, tc.want)
		}
	}
	if len(runeToByte) != 256 {
		t.Fatalf("runeToByte has %d entries, want 256 distinct characters", len(runeToByte))
	}
	for b := 0; b < 256; b++ {
		if runeToByte[byteToRune[b]] != byte(b) {
			t.Fatalf("byte %#02x does not round-trip", b)
		}
	}
	if got := byteLevelString(" the\n"); got != "ĠtheĊ" {
		t.Errorf("byteLevelString = %q", got)
	}
	if b, ok := byteLevelBytes("ĠtheĊ"); !ok || string(b) != " the\n" {
		t.Errorf("byteLevelBytes = %q, %v", b, ok)
	}
	if _, ok := byteLevelBytes("<|日本|>"); ok {
		t.Error("byteLevelBytes accepted a character outside the alphabet")
	}
}

func TestLossyUTF8(t *testing.T) {
	const R = "\uFFFD"
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain ascii", "plain ascii"},
		{"café 🤖", "café 🤖"},
		{"\xe2\x82A", R + "A"},            // truncated 3-byte sequence: one maximal subpart
		{"\xf0\x9f\xa4", R},               // truncated 4-byte sequence
		{"\xf0\x9f", R},                   // shorter truncation
		{"\xf0\x9f\xa4\x96\xf0", "🤖" + R}, // complete then truncated
		{"\xc0\x80", R + R},               // overlong lead byte: never valid, one each
		{"\xed\xa0\x80", R + R + R},       // surrogate: ED takes only 80..9F
		{"\xe0\x80\x80", R + R + R},       // overlong 3-byte: E0 takes only A0..BF
		{"\xf4\x90\x80\x80", R + R + R + R},
		{"\xf5\x80", R + R},
		{"\x80\x80", R + R}, // lone continuation bytes
		{"a\xffb", "a" + R + "b"},
		{"\xe2\x82\xe2\x82\xac", R + "€"},
	}
	for _, tc := range tests {
		got := string(appendLossyUTF8(nil, []byte(tc.in)))
		if got != tc.want {
			t.Errorf("appendLossyUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("appendLossyUTF8(%q) is not valid UTF-8", tc.in)
		}
	}
}
