package verify

import (
	"strings"
	"testing"
)

func TestCheckIDs(t *testing.T) {
	tests := []struct {
		name   string
		seqs   [][]int
		maxPos int
		err    string
	}{
		{"ok", [][]int{{0, 9}, {5}}, 2, ""},
		{"unlimited context", [][]int{make([]int, 5000)}, 0, ""},
		{"too long", [][]int{{1}, {1, 2, 3}}, 2, "sequence 1 has 3 tokens, beyond max_position_embeddings=2"},
		{"id too large", [][]int{{1, 10}}, 0, "sequence 0, position 1: token id 10 outside the vocabulary [0, 10)"},
		{"negative", [][]int{{-1}}, 0, "token id -1"},
		{"empty sequence", [][]int{{1}, {}}, 0, "sequence 1 is empty"},
		{"nothing", nil, 0, "no sequences"},
	}
	for _, tc := range tests {
		err := CheckIDs(tc.seqs, 10, tc.maxPos)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}
