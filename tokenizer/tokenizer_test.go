package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/text/unicode/norm"
)

// fixtureMap returns the fixture tokenizer.json as a generic JSON tree, for
// tests that change a part of it.
func fixtureMap(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tinyJSON builds a byte-level BPE tokenizer.json whose vocab is the 256
// byte tokens (ids 0-255 in byte order) plus the products of merges, in
// order. edit may change the tree before it is serialized.
func tinyJSON(t testing.TB, merges []string, edit func(root, model map[string]any)) []byte {
	t.Helper()
	vocab := map[string]any{}
	for b := 0; b < 256; b++ {
		vocab[string(byteToRune[b])] = b
	}
	next := 256
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		if _, ok := vocab[a+b]; !ok {
			vocab[a+b] = next
			next++
		}
	}
	model := map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "fuse_unk": false,
		"byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
	root := map[string]any{
		"version":      "1.0",
		"added_tokens": []any{},
		"normalizer":   map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwen2Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model":   model,
	}
	if edit != nil {
		edit(root, model)
	}
	return mustJSON(t, root)
}

func mustParse(t testing.TB, data []byte) *Tokenizer {
	t.Helper()
	tok, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokens spells ids as token strings, for readable expectations.
func tokens(t testing.TB, tok *Tokenizer, ids []int) []string {
	t.Helper()
	out := make([]string, len(ids))
	for i, id := range ids {
		s, ok := tok.Token(id)
		if !ok {
			t.Fatalf("id %d has no token", id)
		}
		out[i] = s
	}
	return out
}

func TestBPEMerges(t *testing.T) {
	tests := []struct {
		name   string
		merges []string
		in     string
		want   []string
	}{
		{"no merges", nil, "abc", []string{"a", "b", "c"}},
		{"rank order", []string{"a b", "b c", "ab c"}, "abc", []string{"abc"}},
		{"lower rank wins", []string{"b c", "a b", "a bc"}, "abc", []string{"abc"}},
		{"blocked by better pair", []string{"b c", "a b"}, "abc", []string{"a", "bc"}},
		{"leftmost of equal ranks", []string{"a a"}, "aaa", []string{"aa", "a"}},
		{"pairs of pairs", []string{"a a"}, "aaaa", []string{"aa", "aa"}},
		{"new pair after merge", []string{"a a", "aa a"}, "aaa", []string{"aaa"}},
		{"stale candidate skipped", []string{"a a", "aa a"}, "aaaa", []string{"aa", "aa"}},
		{"space prefix", []string{"Ġ t", "h e", "Ġt he"}, " the", []string{"Ġthe"}},
		{"no merge across pieces", []string{"b Ġ"}, "ab ab", []string{"a", "b", "Ġ", "a", "b"}},
		{"merges across bytes of a character", []string{"Ã ©"}, "é", []string{"Ã©"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, pairs := range []bool{false, true} {
				tok := mustParse(t, tinyJSON(t, tc.merges, func(root, model map[string]any) {
					if pairs { // the newer ["a", "b"] form of merges
						var ps [][]string
						for _, m := range tc.merges {
							a, b, _ := strings.Cut(m, " ")
							ps = append(ps, []string{a, b})
						}
						model["merges"] = ps
					}
				}))
				got := tokens(t, tok, tok.Encode(tc.in))
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("pairs=%v: Encode(%q) mismatch (-want +got):\n%s", pairs, tc.in, diff)
				}
			}
		})
	}
}

func TestBPEUnknownBytes(t *testing.T) {
	// A vocab without the bytes of "é" (C3 A9).
	drop := func(model map[string]any) {
		v := model["vocab"].(map[string]any)
		delete(v, string(byteToRune[0xC3]))
		delete(v, string(byteToRune[0xA9]))
	}
	tests := []struct {
		name string
		edit func(model map[string]any)
		want []string
	}{
		{"dropped without unk_token", func(m map[string]any) {}, []string{"a", "b"}},
		{"unk per byte", func(m map[string]any) {
			m["vocab"].(map[string]any)["<unk>"] = 300
			m["unk_token"] = "<unk>"
		}, []string{"a", "<unk>", "<unk>", "b"}},
		{"fused unk", func(m map[string]any) {
			m["vocab"].(map[string]any)["<unk>"] = 300
			m["unk_token"] = "<unk>"
			m["fuse_unk"] = true
		}, []string{"a", "<unk>", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := mustParse(t, tinyJSON(t, nil, func(_, model map[string]any) { drop(model); tc.edit(model) }))
			if diff := cmp.Diff(tc.want, tokens(t, tok, tok.Encode("aéb"))); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBPEIgnoreMerges(t *testing.T) {
	edit := func(ignore bool) func(_, model map[string]any) {
		return func(_, model map[string]any) {
			model["vocab"].(map[string]any)["abcd"] = 400
			model["ignore_merges"] = ignore
		}
	}
	merges := []string{"a b", "c d"}
	for _, tc := range []struct {
		ignore bool
		want   []string
	}{{false, []string{"ab", "cd"}}, {true, []string{"abcd"}}} {
		tok := mustParse(t, tinyJSON(t, merges, edit(tc.ignore)))
		if diff := cmp.Diff(tc.want, tokens(t, tok, tok.Encode("abcd"))); diff != "" {
			t.Errorf("ignore_merges=%v: mismatch (-want +got):\n%s", tc.ignore, diff)
		}
	}
}

// naiveBPE is the textbook algorithm: merge the pair of lowest rank,
// leftmost first, until no pair merges. Hugging Face's heap algorithm gives
// the same result.
func naiveBPE(m *bpeModel, piece string) []int {
	var ids []int
	for i := 0; i < len(piece); i++ {
		ids = append(ids, int(m.byteID[piece[i]]))
	}
	for {
		best, bestRank, bestID := -1, int32(0), int32(0)
		for i := 0; i+1 < len(ids); i++ {
			if r, ok := m.merges[pairKey(int32(ids[i]), int32(ids[i+1]))]; ok && (best < 0 || r.rank < bestRank) {
				best, bestRank, bestID = i, r.rank, r.id
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = int(bestID)
		ids = append(ids[:best+1], ids[best+2:]...)
	}
}

// reference encodes with the hand-checked pre-tokenizer and naiveBPE, no
// added tokens: what Encode must give for text without special tokens.
func reference(tok *Tokenizer, text string) []int {
	ids := []int{}
	for _, p := range preTokenize(norm.NFC.String(text)) {
		ids = append(ids, naiveBPE(&tok.model, p)...)
	}
	return ids
}

func readShakespeare(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestTinyShakespeare(t *testing.T) {
	tok := loadFixture(t)
	text := readShakespeare(t)
	start := time.Now()
	ids := tok.Encode(text)
	t.Logf("encoded %d bytes into %d tokens in %v (cold cache)", len(text), len(ids), time.Since(start))
	if want := reference(tok, text); !slices.Equal(want, ids) {
		t.Fatalf("Encode differs from the naive reference:\n%.2000s", cmp.Diff(want, ids))
	}
	// Again, now from the word cache.
	if again := tok.Encode(text); !slices.Equal(ids, again) {
		t.Fatalf("second Encode (cached) differs:\n%.2000s", cmp.Diff(ids, again))
	}
	got, err := tok.Decode(ids)
	if err != nil {
		t.Fatal(err)
	}
	if got != text {
		t.Fatal("Decode(Encode(tinyshakespeare)) differs from the text")
	}
}

// Hard cases without Hugging Face ids: the expectation is the hand-checked
// pre-token split (TestPreTokenizeHandDerived) merged by naiveBPE.
func TestEncodeHardCases(t *testing.T) {
	tok := loadFixture(t)
	texts := []string{
		strings.Repeat(" ", 257) + "x" + strings.Repeat("\t", 40),
		"a\r\n\r\n\r\nb\r\rc\n\r\n",
		"Привет, мир! 日本語のテキスト and English مرحبا",
		"0123456789 ١٢٣ x²³ Ⅻ 3.14159e-10",
		"👩‍👩‍👧‍👦 🇫🇷 ❤️ 🤖🚀",
		"e\u0301 a\u0308 \u212b Å x\u0301\u0302 नमस्ते",
		"DON'T I'M YOU'RE WE'VE HE'D SHE'LL IT'S x'ſ 'ſt 'K",
		"The quick brown fox's 'tis ''s",
		"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
		"<|im_start", "im_end|>", "<|endoftext", // partial special tokens are text
	}
	for _, text := range texts {
		want := reference(tok, text)
		if diff := cmp.Diff(want, tok.Encode(text)); diff != "" {
			t.Errorf("Encode(%q) mismatch (-reference +got):\n%s", text, diff)
		}
		got, err := tok.Decode(tok.Encode(text))
		if err != nil {
			t.Fatal(err)
		}
		if got != norm.NFC.String(text) {
			t.Errorf("Decode(Encode(%q)) = %q, want NFC of the text", text, got)
		}
	}
}

func TestEncodeNFC(t *testing.T) {
	tok := loadFixture(t)
	tests := []struct{ in, same string }{
		{"e\u0301", "é"},
		{"\u212b", "Å"},        // angstrom sign → A with ring
		{"\u212a", "K"},        // kelvin sign → K
		{"a\u0308o", "äo"},     // composed inside a word
		{"\u1e0b\u0323", "ḍ̇"}, // reordering of marks
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tok.Encode(tc.same), tok.Encode(tc.in)); diff != "" {
			t.Errorf("Encode(%q) != Encode(%q):\n%s", tc.in, tc.same, diff)
		}
	}
}

func TestEncodeSpecialTokens(t *testing.T) {
	tok := loadFixture(t)
	enc := func(s string) []int { return tok.Encode(s) }
	cat := func(parts ...[]int) []int {
		out := []int{}
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const eot, start, end = 1021, 1022, 1023
	tests := []struct {
		name string
		in   string
		want []int
	}{
		{"alone", "<|endoftext|>", []int{eot}},
		{"adjacent", "<|endoftext|><|endoftext|><|im_end|>", []int{eot, eot, end}},
		{"inside a word", "a<|im_end|>b", cat(enc("a"), []int{end}, enc("b"))},
		{"splits contractions and spaces", "x<|im_end|>'s  ", cat(enc("x"), []int{end}, enc("'s  "))},
		{"space before is text", "hi <|im_start|>", cat(enc("hi "), []int{start})},
		{"chat", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
			cat([]int{start}, enc("user\nHi"), []int{end}, enc("\n"), []int{start}, enc("assistant\n"))},
		{"partial then whole", "<|im_end<|im_end|>", cat(enc("<|im_end"), []int{end})},
		// NFC applies to each piece between added tokens: the mark does not
		// compose with the e across the special token.
		{"no NFC across specials", "e<|endoftext|>\u0301", cat(enc("e"), []int{eot}, reference(tok, "\u0301"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tok.Encode(tc.in)); diff != "" {
				t.Errorf("Encode(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestAddedTokenOptions(t *testing.T) {
	added := func(content string, id int, opts map[string]bool) map[string]any {
		a := map[string]any{"id": id, "content": content, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true}
		for k, v := range opts {
			a[k] = v
		}
		return a
	}
	tests := []struct {
		name  string
		token map[string]any
		in    string
		want  []string
	}{
		{"plain", added("<x>", 500, nil), "a <x> b", []string{"a", "Ġ", "<x>", "Ġ", "b"}},
		{"lstrip", added("<x>", 500, map[string]bool{"lstrip": true}), "a  <x> b", []string{"a", "<x>", "Ġ", "b"}},
		{"rstrip", added("<x>", 500, map[string]bool{"rstrip": true}), "a <x>  b", []string{"a", "Ġ", "<x>", "b"}},
		{"both", added("<x>", 500, map[string]bool{"lstrip": true, "rstrip": true}), "a \t<x>\n b", []string{"a", "<x>", "b"}},
		{"single word matches alone", added("ab", 500, map[string]bool{"single_word": true}), "x ab y", []string{"x", "Ġ", "ab", "Ġ", "y"}},
		{"single word refuses inside a word", added("ab", 500, map[string]bool{"single_word": true}), "xab", []string{"x", "a", "b"}},
		{"normalized token matches after NFC", added("é", 500, map[string]bool{"normalized": true, "special": false}), "e\u0301!", []string{"é", "!"}},
		{"raw token does not see NFC", added("é", 500, nil), "e\u0301!", []string{"Ã", "©", "!"}},
		{"longest match wins", added("<x>>", 500, nil), "<x>>", []string{"<x>>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := mustParse(t, tinyJSON(t, nil, func(root, _ map[string]any) {
				root["added_tokens"] = []any{added("<x>", 501, nil), tc.token}
			}))
			got := tokens(t, tok, tok.Encode(tc.in))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Encode(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tok := loadFixture(t)
	robot := tok.Encode("🤖") // one character, four byte tokens
	if len(robot) != 4 {
		t.Fatalf("🤖 encodes to %v, want 4 byte tokens", robot)
	}
	tests := []struct {
		name string
		ids  []int
		want string
	}{
		{"empty", nil, ""},
		{"special tokens are kept", []int{1022, 394, 274, 1023}, "<|im_start|>user<|im_end|>"},
		{"cut character is one U+FFFD", robot[:2], "\uFFFD"},
		{"cut then whole", append(robot[:3:3], robot...), "\uFFFD🤖"},
		{"whole", robot, "🤖"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tok.Decode(tc.ids)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Decode(%v) = %q, want %q", tc.ids, got, tc.want)
			}
		})
	}
	raw, err := tok.DecodeBytes(robot[:2])
	if err != nil || string(raw) != "\xf0\x9f" {
		t.Errorf("DecodeBytes = %q, %v; want the raw bytes F0 9F", raw, err)
	}
	// Ids beyond the tokenizer (a model's padding rows) are skipped, as
	// Hugging Face does; a negative id cannot be a token id at all.
	for _, ids := range [][]int{{1024, 39}, {39, 1 << 40}, {39, 5000, 1024}} {
		got, err := tok.Decode(ids)
		want, _ := tok.Decode([]int{39})
		if err != nil || got != want {
			t.Errorf("Decode(%v) = %q, %v; want %q (unknown ids skipped)", ids, got, err, want)
		}
	}
	if _, err := tok.Decode([]int{39, -1}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("Decode with a negative id: error = %v, want one saying negative", err)
	}
}

func TestVocabAndLookup(t *testing.T) {
	tok := loadFixture(t)
	if got := tok.VocabSize(); got != 1024 {
		t.Errorf("VocabSize = %d, want 1024", got)
	}
	tests := []struct {
		tok string
		id  int
		ok  bool
	}{
		{"<|endoftext|>", 1021, true}, {"<|im_start|>", 1022, true}, {"<|im_end|>", 1023, true},
		{"Ġthe", 266, true}, {"!", 0, true}, {"Ń", 255, true},
		{" the", 0, false}, {"nope-not-a-token", 0, false},
	}
	for _, tc := range tests {
		id, ok := tok.TokenID(tc.tok)
		if id != tc.id || ok != tc.ok {
			t.Errorf("TokenID(%q) = %d, %v; want %d, %v", tc.tok, id, ok, tc.id, tc.ok)
		}
		if ok {
			if s, _ := tok.Token(id); s != tc.tok {
				t.Errorf("Token(%d) = %q, want %q", id, s, tc.tok)
			}
		}
	}
	if diff := cmp.Diff([]string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, tok.SpecialTokens()); diff != "" {
		t.Errorf("SpecialTokens mismatch:\n%s", diff)
	}
	// An added token not in the vocab gets the next id after it, whatever
	// id the file wrote (as in Hugging Face); a hole has no token.
	tiny := mustParse(t, tinyJSON(t, nil, func(root, _ map[string]any) {
		root["model"].(map[string]any)["vocab"].(map[string]any)["zz"] = 299
		root["added_tokens"] = []any{map[string]any{"id": 300, "content": "<pad>", "special": true}}
	}))
	if got := tiny.VocabSize(); got != 300 {
		t.Errorf("VocabSize with vocab up to 299 and one added token = %d, want 300", got)
	}
	if id, _ := tiny.TokenID("<pad>"); id != 257 {
		t.Errorf("added token <pad> got id %d, want 257 (the vocab's size)", id)
	}
	if got, err := tiny.Decode([]int{280, 'a'}); err != nil || got != "a" {
		t.Errorf("Decode of a hole and 'a' = %q, %v; want %q (the hole skipped)", got, err, "a")
	}
}

func TestLoadPaths(t *testing.T) {
	for _, p := range []string{fixtureDir, filepath.Join(fixtureDir, "tokenizer.json")} {
		if _, err := Load(p); err != nil {
			t.Errorf("Load(%q): %v", p, err)
		}
	}
	for _, p := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing.json")} {
		if _, err := Load(p); err == nil {
			t.Errorf("Load(%q) succeeded", p)
		}
	}
	// Every checkpoint under testdata that ships a tokenizer.json loads and
	// agrees with the fixture (they are copies of the same file today).
	ref := loadFixture(t)
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "*", "*", "tokenizer.json"))
	more, _ := filepath.Glob(filepath.Join("..", "testdata", "*", "*", "model", "tokenizer.json"))
	for _, f := range append(files, more...) {
		tok, err := Load(f)
		if err != nil {
			t.Errorf("Load(%q): %v", f, err)
			continue
		}
		const s = "<|im_start|>user\nWhat's 2+2?<|im_end|>\n"
		if diff := cmp.Diff(ref.Encode(s), tok.Encode(s)); diff != "" {
			t.Errorf("%s encodes differently from the fixture:\n%s", f, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(root, model map[string]any)
		want string // in the error
	}{
		{"normalizer", func(r, m map[string]any) { r["normalizer"] = map[string]any{"type": "BertNormalizer"} }, `normalizer "BertNormalizer" is not supported`},
		{"normalizer in sequence", func(r, m map[string]any) {
			r["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "Precompiled"}}}
		}, `"Precompiled"`},
		{"WordPiece", func(r, m map[string]any) { m["type"] = "WordPiece" }, `model "WordPiece"`},
		{"Unigram", func(r, m map[string]any) {
			r["model"] = map[string]any{"type": "Unigram", "unk_id": 0, "vocab": [][]any{{"a", -1.0}}}
		}, `model "Unigram"`},
		{"dropout", func(r, m map[string]any) { m["dropout"] = 0.1 }, "dropout"},
		{"pre-tokenizer", func(r, m map[string]any) { r["pre_tokenizer"] = map[string]any{"type": "BertPreTokenizer"} }, `pre-tokenizer "BertPreTokenizer" is not supported`},
		{"ByteLevel not last", func(r, m map[string]any) {
			p := r["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)
			p[0], p[1] = p[1], p[0]
		}, "ByteLevel before"},
		{"bad regex", func(r, m map[string]any) {
			r["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"Regex": `(\s+`}
		}, "regex"},
		{"no pattern", func(r, m map[string]any) {
			r["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{}
		}, "without a pattern"},
		{"behavior", func(r, m map[string]any) {
			r["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["behavior"] = "Sideways"
		}, `"Sideways"`},
		{"metaspace scheme", func(r, m map[string]any) {
			r["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}
		}, `prepend_scheme "sometimes"`},
		{"post-processor", func(r, m map[string]any) { r["post_processor"] = map[string]any{"type": "Magic"} }, `post_processor "Magic" is not supported`},
		{"template token", func(r, m map[string]any) {
			r["post_processor"] = map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}},
				"special_tokens": map[string]any{}}
		}, `special token "<s>"`},
		{"decoder", func(r, m map[string]any) { r["decoder"] = map[string]any{"type": "WordPiece"} }, `decoder "WordPiece"`},
		{"merge of unknown token", func(r, m map[string]any) { m["merges"] = []string{"a zz"} }, `"zz" is not in the vocab`},
		{"merge product unknown", func(r, m map[string]any) {
			m["merges"] = []string{"a b"}
			delete(m["vocab"].(map[string]any), "ab")
		}, `"ab" is not in the vocab`},
		{"bad merge", func(r, m map[string]any) { m["merges"] = []any{"ab"} }, "merges[0]"},
		{"bad merge pair", func(r, m map[string]any) { m["merges"] = []any{[]string{"a", "b", "c"}} }, "merges[0]"},
		{"negative id", func(r, m map[string]any) { m["vocab"].(map[string]any)["zz"] = -3 }, "id -3"},
		{"sparse ids", func(r, m map[string]any) { m["vocab"].(map[string]any)["zz"] = 9_000_000 }, "sparse"},
		{"huge id", func(r, m map[string]any) { m["vocab"].(map[string]any)["zz"] = 1 << 30 }, "outside"},
		{"shared id", func(r, m map[string]any) { m["vocab"].(map[string]any)["zz"] = 5 }, "share id 5"},
		{"unk not in vocab", func(r, m map[string]any) { m["unk_token"] = "<unk>" }, `unk_token "<unk>"`},
		{"added id", func(r, m map[string]any) { r["added_tokens"] = []any{map[string]any{"id": -1, "content": "x"}} }, "added token"},
		{"no model", func(r, m map[string]any) { delete(r, "model") }, "no model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tinyJSON(t, []string{"a b"}, tc.edit))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Parse([]byte("{not json")); err == nil {
		t.Error("Parse of invalid JSON succeeded")
	}
	// Accepted variations: no normalizer, no decoder, decoder sequence.
	for _, edit := range []func(r, m map[string]any){
		func(r, m map[string]any) { r["normalizer"] = nil },
		func(r, m map[string]any) { r["decoder"] = nil },
		func(r, m map[string]any) {
			r["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "ByteLevel"}}}
		},
		func(r, m map[string]any) { m["dropout"] = 0.0 },
	} {
		if _, err := Parse(tinyJSON(t, []string{"a b"}, edit)); err != nil {
			t.Errorf("Parse: %v", err)
		}
	}
}

func TestNoDecoderJoinsTokens(t *testing.T) {
	tok := mustParse(t, tinyJSON(t, []string{"Ġ b"}, func(r, m map[string]any) { r["decoder"] = nil }))
	got, err := tok.Decode(tok.Encode("a b"))
	if err != nil {
		t.Fatal(err)
	}
	if got != "a Ġb" { // Hugging Face joins raw tokens with spaces without a decoder
		t.Errorf("Decode = %q, want %q", got, "a Ġb")
	}
}

func TestConcurrentEncode(t *testing.T) {
	text := readShakespeare(t)
	lines := strings.SplitAfter(text[:200_000], "\n")
	want := make([][]int, len(lines))
	ref := loadFixture(t)
	for i, l := range lines {
		want[i] = ref.Encode(l)
	}
	tok := loadFixture(t) // cold cache, filled concurrently
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(lines)+w; i++ {
				k := i % len(lines)
				if !slices.Equal(want[k], tok.Encode(lines[k])) {
					errs <- lines[k]
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for l := range errs {
		t.Errorf("concurrent Encode(%q) differs", l)
	}
}

func FuzzEncodeDecode(f *testing.F) {
	for _, g := range loadGolden(f) {
		f.Add(g.Text)
	}
	for _, s := range []string{"e\u0301\u0302x", "'ſ 'S", "\r\n \r\n", "\xff\xfe a", strings.Repeat(" ", 70) + "x"} {
		f.Add(s)
	}
	tok := loadFixture(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q) gave id %d outside the vocab", s, id)
			}
		}
		if tok.hasAddedString(s) {
			return
		}
		raw, err := tok.DecodeBytes(ids)
		if err != nil {
			t.Fatal(err)
		}
		if want := nfc(s); string(raw) != want {
			t.Fatalf("DecodeBytes(Encode(%q)) = %q, want NFC %q", s, raw, want)
		}
		if utf8.ValidString(s) {
			text, err := tok.Decode(ids)
			if err != nil {
				t.Fatal(err)
			}
			if text != nfc(s) {
				t.Fatalf("Decode(Encode(%q)) = %q, want its NFC", s, text)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	// Small documents, so that mutations reach past the JSON syntax; the
	// full fixture is covered by the other tests.
	pre := `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + mustQuote(qwen2Pattern) +
		`},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]}`
	f.Add([]byte(`{"added_tokens":[{"id":6,"content":"<x>","special":true}],"normalizer":{"type":"NFC"},"pre_tokenizer":` + pre +
		`,"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"c":4,"abc":5},"merges":["a b","ab c"]}}`))
	f.Add([]byte(`{"added_tokens":[{"id":9,"content":"é","normalized":true,"lstrip":true,"rstrip":true,"single_word":true}],"pre_tokenizer":` + pre +
		`,"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"ignore_merges":true,"vocab":{"<unk>":0,"a":1,"b":2,"ab":3},"merges":[["a","b"]]}}`))
	f.Add([]byte(`{"model":{"type":"WordPiece"}}`))
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Lowercase"}]}}`))
	f.Add([]byte(`null`))
	// The other components: Metaspace, byte fallback, decoders, templates.
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},` +
		`"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true},` +
		`"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1]}}},` +
		`"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},` +
		`"added_tokens":[{"id":1,"content":"<s>","special":true}],` +
		`"model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,"vocab":{"<unk>":0,"<s>":1,"<0x61>":2,"▁":3,"b":4,"▁b":5},"merges":["▁ b"]}}`))
	f.Add([]byte(`{"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"Punctuation"},{"type":"Whitespace"},` +
		`{"type":"Split","pattern":{"Regex":"(?<=a)b|\p{L}+"},"behavior":"MergedWithNext","invert":true},{"type":"ByteLevel","add_prefix_space":true}]},` +
		`"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKD"},{"type":"Lowercase"},{"type":"Strip"}]},` +
		`"model":{"type":"BPE","continuing_subword_prefix":"##","end_of_word_suffix":"</w>","vocab":{"a":0,"##b":1,"ab":2,"b</w>":3},"merges":["a ##b"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "ab abc <x> <|im_end|>", "é\xff 12 'S\n\n "} {
			ids := tok.Encode(s)
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", s, err)
			}
			tok.EncodeWithSpecialTokens(s)
			if _, err := tok.DecodeBytes(append(ids, 0, 5, 1<<20)); err != nil {
				t.Fatalf("DecodeBytes: %v", err)
			}
		}
		tok.VocabSize()
		tok.TokenID("a")
	})
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func BenchmarkEncodeTinyShakespeare(b *testing.B) {
	tok := loadFixture(b)
	text := readShakespeare(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

// BenchmarkEncodeTinyShakespeareCold measures a fresh tokenizer each time:
// every word goes through BPE once before the cache helps.
func BenchmarkEncodeTinyShakespeareCold(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(fixtureDir, "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	text := readShakespeare(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		b.StopTimer()
		tok, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		tok.Encode(text)
	}
}

func BenchmarkDecodeTinyShakespeare(b *testing.B) {
	tok := loadFixture(b)
	text := readShakespeare(b)
	ids := tok.Encode(text)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tok.Decode(ids); err != nil {
			b.Fatal(err)
		}
	}
}
