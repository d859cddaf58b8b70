package tokenizer

import "slices"

// Merges returns the BPE merges in rank order, each as "left right" in the
// byte-level alphabet of tokenizer.json (the form GGUF's
// tokenizer.ggml.merges takes). A pair listed twice appears once, at the
// rank that applies.
func (t *Tokenizer) Merges() []string {
	type entry struct {
		rank int32
		s    string
	}
	es := make([]entry, 0, len(t.model.merges))
	vocabTok := make(map[int]string, len(t.model.vocab))
	for s, id := range t.model.vocab {
		vocabTok[id] = s
	}
	for k, r := range t.model.merges {
		a, b := vocabTok[int(k>>32)], vocabTok[int(uint32(k))]
		es = append(es, entry{r.rank, a + " " + b})
	}
	slices.SortFunc(es, func(x, y entry) int { return int(x.rank - y.rank) })
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.s
	}
	return out
}

// AddedToken is an entry of tokenizer.json's added_tokens.
type AddedToken struct {
	ID         int
	Content    string
	Special    bool
	Normalized bool
}

// AddedTokens returns the added tokens in the order of tokenizer.json.
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, len(t.added))
	for i, a := range t.added {
		out[i] = AddedToken{ID: a.ID, Content: a.Content, Special: a.Special, Normalized: a.Normalized}
	}
	return out
}
