package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// Characters that exercise decomposition, reordering and composition:
// starters, marks of several combining classes, precomposed letters,
// singletons, exclusions, Hangul jamo and syllables, an invalid byte.
var nfcAlphabet = []string{
	"a", "e", "u", "A", "o", "ω", "Α", "क", "ᄀ", "ᅡ", "ᆨ", "가", "각", "x",
	"\u0301", "\u0300", "\u0302", "\u0308", "\u0304", "\u0323", "\u0327", "\u0328", "\u0342", "\u0345",
	"\u05b0", "\u093c", "\u094d", "\u0340", "\u0344", "\u034f",
	"é", "ǖ", "ậ", "Å", "ᾳ", "ự", "\u212b", "\u2126", "\u212a", "\uf900", "\u0958", "\u1e9b",
	"\xff",
}

func TestExactNFCMatchesXText(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(10) {
			b.WriteString(nfcAlphabet[rng.IntN(len(nfcAlphabet))])
		}
		s := b.String()
		// Short strings have no run of 30 non-starters: x/text's NFC is
		// plain NFC there.
		if got, want := exactNFC(s), norm.NFC.String(s); got != want {
			t.Fatalf("exactNFC(%+q) = %+q, x/text gives %+q", s, got, want)
		}
	}
}

func TestNFCLongMarkRuns(t *testing.T) {
	rep := strings.Repeat
	tests := []struct{ name, in, want string }{
		{"forty acutes", "a" + rep("\u0301", 40), "á" + rep("\u0301", 39)},
		// Reordering puts the 20 dots below (class 220) before the 20 acutes
		// (230); the first dot composes, the rest are blocked.
		{"interleaved classes", "a" + rep("\u0301\u0323", 20), "ạ" + rep("\u0323", 19) + rep("\u0301", 20)},
		{"marks without starter", rep("\u0308", 35), rep("\u0308", 35)},
		{"long run then text", "e" + rep("\u0300", 31) + " é", "è" + rep("\u0300", 30) + " é"},
		{"hangul after run", "x" + rep("\u0301", 33) + "ᄀ" + "ᅡ", "x" + rep("\u0301", 33) + "가"},
		{"invalid byte inside", "a" + rep("\u0301", 31) + "\xff" + "e\u0301", "á" + rep("\u0301", 30) + "\xff" + "é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nfc(tc.in); got != tc.want {
				t.Errorf("nfc(%+q) = %+q, want %+q", tc.in, got, tc.want)
			}
		})
	}
	// And through Encode: no U+034F appears in the tokens.
	tok := loadFixture(t)
	in := "Zalgo: Z" + rep("\u0336\u0301", 25)
	got, err := tok.Decode(tok.Encode(in))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, cgj) || got != exactNFC(in) {
		t.Errorf("Decode(Encode(%+q)) = %+q, want %+q", in, got, exactNFC(in))
	}
}

// FuzzNFC checks the by-the-book NFC against x/text wherever x/text's
// stream-safe limit does not apply, and that nfc never adds U+034F.
func FuzzNFC(f *testing.F) {
	for _, s := range []string{"e\u0301", "각", "\u1e9b\u0323", "a\u0301\u0323\u0345", "\uf900\u0958", strings.Repeat("\u0301", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := nfc(s)
		if strings.Count(got, cgj) > strings.Count(s, cgj) {
			t.Fatalf("nfc(%+q) = %+q added U+034F", s, got)
		}
		if exact := exactNFC(s); got != exact {
			t.Fatalf("nfc(%+q) = %+q, exactNFC gives %+q", s, got, exact)
		}
	})
}
