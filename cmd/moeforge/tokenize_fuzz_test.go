package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/moeforge/moeforge/tokenizer"
)

// FuzzDecodeIDs feeds arbitrary `tokenize --decode` input (integers, a
// JSON array or {"ids": [...]}) to parseIDs and runDecode with the test
// tokenizer. Neither may panic; every id parseIDs returns is an integer
// written in the input, and a bad id is an error, not a crash.
func FuzzDecodeIDs(f *testing.F) {
	for _, s := range []string{"1 2 3", "[1021, 5, 1023]", `{"ids": [0, 1, 2]}`, "-1", "[1e3]", `{"ids": "x"}`, "[1] 2", "99999999999999999999", "[5, 1024]"} {
		f.Add(s)
	}
	tok, err := tokenizer.Load(tokenizerFixture)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := parseIDs(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tokenize: ") {
				t.Fatalf("error without the command's name: %v", err)
			}
			return
		}
		for _, id := range ids {
			if !strings.Contains(s, strconv.Itoa(max(id, -id))) { // "-01" is -1: compare the digits
				t.Fatalf("id %d is not in the input %q", id, s)
			}
		}
		var out bytes.Buffer
		runDecode(&out, tok, s, false)
		runDecode(&out, tok, s, true)
	})
}
