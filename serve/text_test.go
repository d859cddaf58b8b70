package serve_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
	"github.com/moeforge/moeforge/serve"
	"github.com/moeforge/moeforge/tokenizer"
)

// FuzzTextDecoder: whatever the token ids, the streamed pieces add up to
// decoding all ids at once; with stop strings, to that text cut before the
// first stop string, with no piece ever showing part of one.
func FuzzTextDecoder(f *testing.F) {
	tok, err := tokenizer.Load(fixturetest.Dir(f, "models/qwen2_moe_small"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{1, 0, 2, 0, 3, 0}, "e")
	f.Add([]byte{0x10, 0x01, 0x20, 0x02, 0xff, 0x03}, "\n\n")
	f.Add([]byte("ROMEO: and JULIET"), "ET")
	vocab := tok.VocabSize()
	f.Fuzz(func(t *testing.T, raw []byte, stop string) {
		var ids []int
		for i := 0; i+1 < len(raw); i += 2 {
			ids = append(ids, int(binary.LittleEndian.Uint16(raw[i:]))%vocab)
		}
		all, err := tok.DecodeBytes(ids)
		if err != nil {
			return
		}
		full := string(serve.LossyUTF8(all))
		var stops []string
		if stop != "" {
			stops = []string{stop}
		}
		d := &serve.TextDecoder{Tok: tok, Stop: stops}
		var b strings.Builder
		stopped := false
		for _, id := range ids {
			piece, hit, err := d.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(piece)
			if hit {
				stopped = true
				break
			}
		}
		if !stopped {
			b.WriteString(d.Flush())
		}
		want := full
		if i := strings.Index(full, stop); stop != "" && i >= 0 {
			want = full[:i]
		}
		if stopped != (stop != "" && strings.Contains(full, stop)) {
			t.Fatalf("stopped=%v, but the full text %q contains %q: %v", stopped, full, stop, strings.Contains(full, stop))
		}
		if b.String() != want {
			t.Fatalf("streamed %q, want %q (stop %q)", b.String(), want, stop)
		}
	})
}
