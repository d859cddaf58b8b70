package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// decoder is one decoder of tokenizer.json, with Hugging Face's
// decode_chain semantics: it maps the list of token strings to a new list;
// the final text is their concatenation. With raw set, byte-producing
// decoders keep invalid UTF-8 as it is (for DecodeBytes) instead of
// replacing it as Hugging Face does.
type decoder interface {
	decodeChain(tokens []string, raw bool) []string
}

// seqDecoder is Sequence: its members in order.
type seqDecoder []decoder

func (q seqDecoder) decodeChain(tokens []string, raw bool) []string {
	for _, d := range q {
		tokens = d.decodeChain(tokens, raw)
	}
	return tokens
}

// byteLevelDecoder is ByteLevel: every character of every token mapped back
// to its byte (a token with a character outside the alphabet kept as its
// UTF-8), the bytes joined into one token.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string, raw bool) []string {
	var b []byte
	for _, t := range tokens {
		if bs, ok := byteLevelBytes(t); ok {
			b = append(b, bs...)
		} else {
			b = append(b, t...)
		}
	}
	if !raw && !utf8.Valid(b) {
		b = appendLossyUTF8(nil, b)
	}
	return []string{string(b)}
}

// byteFallbackDecoder is ByteFallback: runs of <0xXX> tokens become the
// bytes they stand for — their text if valid UTF-8, else one U+FFFD per
// byte.
type byteFallbackDecoder struct{}

func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(t[3:5]) {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | (c - '0')
		case 'A' <= c && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		case 'a' <= c && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func (byteFallbackDecoder) decodeChain(tokens []string, raw bool) []string {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if raw || utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// fuseDecoder is Fuse: all tokens joined into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string, raw bool) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDecoder is Strip: up to start leading and stop trailing copies of
// the content character removed from every token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (st stripDecoder) decodeChain(tokens []string, raw bool) []string {
	c := string(st.content)
	out := make([]string, len(tokens))
	for k, t := range tokens {
		// Byte-wise, so that raw bytes from ByteFallback pass unchanged.
		for n := 0; n < st.start && strings.HasPrefix(t, c); n++ {
			t = t[len(c):]
		}
		for n := 0; n < st.stop && strings.HasSuffix(t, c); n++ {
			t = t[:len(t)-len(c)]
		}
		out[k] = t
	}
	return out
}

// replaceDecoder is Replace: in every token, matches of the pattern become
// content.
type replaceDecoder struct {
	pat     pattern
	content string
}

func (r replaceDecoder) decodeChain(tokens []string, raw bool) []string {
	out := make([]string, len(tokens))
	for k, t := range tokens {
		out[k] = replaceAll(r.pat, t, r.content)
	}
	return out
}

// metaspaceDecoder is Metaspace: the replacement character becomes a
// space, except in the first token, where (unless prepend_scheme is
// "never") Hugging Face drops every one of them.
type metaspaceDecoder struct {
	repl      rune
	stripHead bool
}

func (m metaspaceDecoder) decodeChain(tokens []string, raw bool) []string {
	out := make([]string, len(tokens))
	for k, t := range tokens {
		with := " "
		if k == 0 && m.stripHead {
			with = ""
		}
		out[k] = strings.ReplaceAll(t, string(m.repl), with)
	}
	return out
}
