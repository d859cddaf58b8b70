package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// bpeModel is a BPE model. Each pre-token starts as one symbol per unit
// — a byte (as its byte-level character) when the pre-tokenizer ends with
// ByteLevel, a character otherwise — and merges join neighbours in order of
// rank, as Hugging Face's BPE does.
type bpeModel struct {
	vocab        map[string]int       // token string → id
	merges       map[uint64]mergeRule // pairKey(left id, right id) → rule
	byteID       [256]int32           // id of the token of each single byte, -1 if none (byte-level)
	unkID        int32                // id of unk_token, -1 without one
	fuseUnk      bool
	ignoreMerges bool

	byteLevel    bool       // pieces are raw bytes, units are their byte-level characters
	byteFallback bool       // an unknown unit becomes its <0xXX> tokens when all exist
	fallbackID   [256]int32 // id of "<0xXX>" for each byte, -1 if none
	prefix       string     // continuing_subword_prefix: added to every unit but the first
	suffix       string     // end_of_word_suffix: added to the last unit

	// metaSplit: no merge can cross the start of a "▁" that follows
	// another character (no vocab token has such a "▁" inside it), so a
	// piece is merged word by word — the same result, but cached. It is what
	// makes Mistral's files (no pre-tokenizer: the whole text is one piece)
	// fast.
	metaSplit bool

	cache   wordCache
	scratch sync.Pool // *mergeScratch
}

// fastBytes reports whether initial symbols come straight from byteID.
func (m *bpeModel) fastBytes() bool {
	return m.byteLevel && !m.byteFallback && m.prefix == "" && m.suffix == ""
}

// mergeRule is one line of merges: its rank (position in the list) and the
// id of the token the pair becomes.
type mergeRule struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// symbol is one current token of a word being merged, in a doubly linked
// list over the word's initial positions. n == 0 marks a symbol that was
// merged into its left neighbour.
type symbol struct {
	id, prev, next, n int32
}

// mergeItem is a candidate merge of the symbol at pos with its right
// neighbour into id.
type mergeItem struct{ rank, pos, id int32 }

type mergeScratch struct {
	syms []symbol
	heap []mergeItem
}

// encodeWord appends the ids of the pre-token piece to dst.
func (m *bpeModel) encodeWord(dst []int, piece string) []int {
	if !m.metaSplit {
		return m.encodeOne(dst, piece)
	}
	start := 0
	for i := 1; i < len(piece); {
		j := strings.Index(piece[i:], metaspaceChar)
		if j < 0 {
			break
		}
		i += j
		if !strings.HasSuffix(piece[:i], metaspaceChar) {
			dst = m.encodeOne(dst, piece[start:i])
			start = i
		}
		i += len(metaspaceChar)
	}
	return m.encodeOne(dst, piece[start:])
}

// metaspaceChar is U+2581, SentencePiece's word-boundary character.
const metaspaceChar = "▁"

// setMetaSplit decides metaSplit (see bpeModel) for a character-level model.
func (m *bpeModel) setMetaSplit() {
	m.metaSplit = false
	if m.byteLevel || m.prefix != "" || m.suffix != "" || m.ignoreMerges {
		return
	}
	if _, ok := m.vocab[metaspaceChar]; !ok {
		return
	}
	for tok := range m.vocab {
		for i := len(metaspaceChar); i < len(tok); i++ {
			if strings.HasPrefix(tok[i:], metaspaceChar) && !strings.HasSuffix(tok[:i], metaspaceChar) {
				return
			}
		}
	}
	m.metaSplit = true
}

// encodeOne appends the ids of one piece, merged as a whole.
func (m *bpeModel) encodeOne(dst []int, piece string) []int {
	switch len(piece) {
	case 0:
		return dst
	case 1:
		if m.fastBytes() {
			if id := m.byteID[piece[0]]; id >= 0 {
				return append(dst, int(id))
			}
		}
	}
	if m.ignoreMerges {
		key := piece
		if m.byteLevel {
			key = byteLevelString(piece)
		}
		if id, ok := m.vocab[key]; ok {
			return append(dst, id)
		}
	}
	if ids, ok := m.cache.get(piece); ok {
		return append(dst, ids...)
	}
	start := len(dst)
	dst = m.merge(dst, piece)
	m.cache.put(piece, dst[start:])
	return dst
}

// merge runs the BPE merges over piece and appends the resulting ids. It
// reproduces the algorithm of Hugging Face tokenizers (Word::merge_all): a
// min-heap of candidate merges ordered by (rank, position); a popped
// candidate is applied if its symbol still exists, still has a right
// neighbour, and the pair there still merges into the same id.
func (m *bpeModel) merge(dst []int, piece string) []int {
	sc, _ := m.scratch.Get().(*mergeScratch)
	if sc == nil {
		sc = new(mergeScratch)
	}
	syms := sc.syms[:0]

	if m.fastBytes() {
		syms = m.byteSymbols(syms, piece)
	} else {
		syms = m.unitSymbols(syms, piece)
	}
	for i := range syms {
		syms[i].prev = int32(i) - 1
		syms[i].next = int32(i) + 1
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}

	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if r, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = heapPush(h, mergeItem{rank: r.rank, pos: int32(i), id: r.id})
		}
	}
	for len(h) > 0 {
		var top mergeItem
		top, h = heapPop(h)
		cur := &syms[top.pos]
		if cur.n == 0 || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		if r, ok := m.merges[pairKey(cur.id, right.id)]; !ok || r.id != top.id {
			continue // stale candidate
		}
		cur.id = top.id
		cur.n += right.n
		syms[cur.next].n = 0
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if r, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				h = heapPush(h, mergeItem{rank: r.rank, pos: cur.prev, id: r.id})
			}
		}
		if cur.next >= 0 {
			if r, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				h = heapPush(h, mergeItem{rank: r.rank, pos: top.pos, id: r.id})
			}
		}
	}
	for i := range syms {
		if syms[i].n != 0 {
			dst = append(dst, int(syms[i].id))
		}
	}
	sc.syms, sc.heap = syms, h
	m.scratch.Put(sc)
	return dst
}

// byteSymbols appends the initial symbols of a byte-level piece: one per
// byte. A byte whose token is missing becomes unk_token (consecutive ones
// fused into one with fuse_unk) or, without unk_token, is dropped — as
// Hugging Face does.
func (m *bpeModel) byteSymbols(syms []symbol, piece string) []symbol {
	pendingUnk := false
	flushUnk := func() {
		if pendingUnk {
			syms = append(syms, symbol{id: m.unkID, n: 1})
			pendingUnk = false
		}
	}
	for i := 0; i < len(piece); i++ {
		id := m.byteID[piece[i]]
		if id >= 0 {
			flushUnk()
			syms = append(syms, symbol{id: id, n: 1})
			continue
		}
		if m.unkID < 0 {
			continue
		}
		if pendingUnk && !m.fuseUnk {
			flushUnk()
		}
		pendingUnk = true
	}
	flushUnk()
	return syms
}

// unitSymbols appends the initial symbols of a piece in the general case,
// following Hugging Face's BPE::merge_word: each unit (with the
// continuing-subword prefix unless first, the end-of-word suffix if last)
// is looked up; a missing one becomes its byte-fallback tokens when they
// all exist, else unk_token (fused with a preceding unk under fuse_unk), or
// nothing without unk_token. As there, a pending unk is emitted only before
// the next known unit or at the end, after any byte-fallback tokens.
func (m *bpeModel) unitSymbols(syms []symbol, piece string) []symbol {
	pendingUnk := false
	for i := 0; i < len(piece); {
		w := 1
		var unit string
		if m.byteLevel {
			unit = byteLevelString(piece[i : i+1])
		} else {
			_, w = utf8.DecodeRuneInString(piece[i:])
			unit = piece[i : i+w]
		}
		if m.prefix != "" && i > 0 {
			unit = m.prefix + unit
		}
		if m.suffix != "" && i+w == len(piece) {
			unit += m.suffix
		}
		i += w
		if id, ok := m.vocab[unit]; ok {
			if pendingUnk {
				syms = append(syms, symbol{id: m.unkID, n: 1})
				pendingUnk = false
			}
			syms = append(syms, symbol{id: int32(id), n: 1})
			continue
		}
		if m.byteFallback {
			all := true
			for k := 0; k < len(unit); k++ {
				if m.fallbackID[unit[k]] < 0 {
					all = false
					break
				}
			}
			if all {
				for k := 0; k < len(unit); k++ {
					syms = append(syms, symbol{id: m.fallbackID[unit[k]], n: 1})
				}
				continue
			}
		}
		if m.unkID < 0 {
			continue
		}
		if pendingUnk && !m.fuseUnk {
			syms = append(syms, symbol{id: m.unkID, n: 1})
		}
		pendingUnk = true
	}
	if pendingUnk {
		syms = append(syms, symbol{id: m.unkID, n: 1})
	}
	return syms
}

func (a mergeItem) less(b mergeItem) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}

func heapPush(h []mergeItem, it mergeItem) []mergeItem {
	h = append(h, it)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []mergeItem) (mergeItem, []mergeItem) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h[r].less(h[l]) {
			c = r
		}
		if !h[c].less(h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return top, h
}

// wordCache maps pre-token pieces to their ids. It is safe for concurrent
// use and bounded: a shard that fills up is emptied.
type wordCache struct {
	shards [cacheShards]cacheShard
}

const (
	cacheShards      = 32
	cacheShardCap    = 2048 // entries per shard
	cacheMaxPieceLen = 64   // longer pieces are rare repeats; not cached
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int
}

// shard picks the shard of a (non-empty) piece from its length and ends:
// cheap, and the shard's map hashes the key again anyway.
func (c *wordCache) shard(piece string) *cacheShard {
	h := uint(len(piece))*0x9E3779B1 ^ uint(piece[0])*31 ^ uint(piece[len(piece)-1])*131 ^ uint(piece[len(piece)/2])*7
	return &c.shards[h%cacheShards]
}

func (c *wordCache) get(piece string) ([]int, bool) {
	if len(piece) > cacheMaxPieceLen {
		return nil, false
	}
	s := c.shard(piece)
	s.mu.RLock()
	ids, ok := s.m[piece]
	s.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(piece string, ids []int) {
	if len(piece) > cacheMaxPieceLen {
		return
	}
	v := make([]int, len(ids))
	copy(v, ids)
	key := string([]byte(piece)) // do not pin the caller's text
	s := c.shard(piece)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= cacheShardCap {
		s.m = make(map[string][]int, 64)
	}
	s.m[key] = v
	s.mu.Unlock()
}
