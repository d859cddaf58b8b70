package model

import (
	"math"
	"sync"

	"github.com/moeforge/moeforge/internal/gemm"
)

// rope holds rotary-embedding tables (non-interleaved halves, as transformers'
// rotate_half), computed in float64 and grown on demand.
type rope struct {
	dim      int
	invFreq  []float64
	mu       sync.Mutex
	cos, sin []float32 // [positions, dim/2]
}

func newRope(dim int, theta float64) *rope {
	r := &rope{dim: dim, invFreq: make([]float64, dim/2)}
	for i := range r.invFreq {
		r.invFreq[i] = 1 / math.Pow(theta, float64(2*i)/float64(dim))
	}
	return r
}

// tables returns cos and sin for positions [0, n).
func (r *rope) tables(n int) (cos, sin []float32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	half := r.dim / 2
	for p := len(r.cos) / max(half, 1); p < n; p++ {
		for _, f := range r.invFreq {
			a := float64(p) * f
			r.cos = append(r.cos, float32(math.Cos(a)))
			r.sin = append(r.sin, float32(math.Sin(a)))
		}
	}
	return r.cos[:n*half], r.sin[:n*half]
}

// apply rotates one head vector v (length dim) for position p.
func applyRope(v, cos, sin []float32, p int) {
	half := len(v) / 2
	c := cos[p*half : (p+1)*half]
	s := sin[p*half : (p+1)*half]
	for i := 0; i < half; i++ {
		a, b := v[i], v[i+half]
		v[i] = a*c[i] - b*s[i]
		v[i+half] = b*c[i] + a*s[i]
	}
}

// KVCache holds the rotated keys and the values of past positions of one
// sequence, for every layer.
type KVCache struct {
	Len  int         // positions already in the cache
	k, v [][]float32 // per layer: [positions, kvHeads·headDim]
}

// NewKVCache returns an empty cache for m.
func (m *Model) NewKVCache() *KVCache {
	return &KVCache{k: make([][]float32, len(m.Layers)), v: make([][]float32, len(m.Layers))}
}

// attnChunk is the number of query rows whose scores are computed by one
// product: a causal chunk only needs the keys up to its last row, so the
// wasted upper-triangle work is at most one chunk's square per chunk.
const attnChunk = 64

// attnDirectRows: chunks with fewer query rows (decoding steps) compute
// their dot products directly on the cache instead of gathering keys and
// transposing values for two matrix products.
const attnDirectRows = 4

// attnScratch holds one worker's attention buffers, reused across calls.
type attnScratch struct {
	q, k, vt, s, o []float32
}

var attnScratchPool = sync.Pool{New: func() any { return new(attnScratch) }}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// attention computes self-attention of layer l for the normed hidden states
// x [N, hidden] of the batch; it returns o_proj's output [N, hidden].
//
// Each (sequence, head) pair is one task; a task walks its queries in chunks
// of attnChunk rows and computes the chunk's scores Q·Kᵀ and its output P·V
// with two matrix products over the keys the chunk can see (causal, and
// within the layer's sliding window when it has one).
func (m *Model) attention(l *Layer, x []float32, b *Batch, hooks *Hooks) []float32 {
	c := m.Config
	n := len(x) / c.HiddenSize
	q := apply(l.Attn.Q, x, n, hooks)
	k := apply(l.Attn.K, x, n, hooks)
	v := apply(l.Attn.V, x, n, hooks)
	hd, nh, nkv := c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads
	qw, kw := nh*hd, nkv*hd
	if l.Attn.QNorm != nil {
		// Qwen3: RMSNorm over each head of q and k (rows of head_dim), before rope.
		rmsNormRows(q, q, l.Attn.QNorm, hd, c.RMSNormEps)
		rmsNormRows(k, k, l.Attn.KNorm, hd, c.RMSNormEps)
	}

	maxPos := 0
	for i, s := range b.Seqs {
		p := len(s)
		if b.Caches != nil {
			p += b.Caches[i].Len
		}
		maxPos = max(maxPos, p)
	}
	cos, sin := m.rope.tables(maxPos)

	out := make([]float32, n*qw)
	type task struct{ seq, head int }
	tasks := make([]task, 0, len(b.Seqs)*nh)
	starts := make([]int, len(b.Seqs))
	keys := make([][]float32, len(b.Seqs))
	vals := make([][]float32, len(b.Seqs))
	past := make([]int, len(b.Seqs))
	row := 0
	for si, s := range b.Seqs {
		starts[si] = row
		if b.Caches != nil {
			past[si] = b.Caches[si].Len
		}
		for t := range s {
			pos := past[si] + t
			for h := 0; h < nh; h++ {
				applyRope(q[(row+t)*qw+h*hd:(row+t)*qw+(h+1)*hd], cos, sin, pos)
			}
			for h := 0; h < nkv; h++ {
				applyRope(k[(row+t)*kw+h*hd:(row+t)*kw+(h+1)*hd], cos, sin, pos)
			}
		}
		ks, vs := k[row*kw:(row+len(s))*kw], v[row*kw:(row+len(s))*kw]
		if b.Caches != nil {
			cache := b.Caches[si]
			if cache.k == nil {
				cache.k, cache.v = make([][]float32, len(m.Layers)), make([][]float32, len(m.Layers))
			}
			cache.k[l.Index] = append(cache.k[l.Index][:past[si]*kw], ks...)
			cache.v[l.Index] = append(cache.v[l.Index][:past[si]*kw], vs...)
			ks, vs = cache.k[l.Index], cache.v[l.Index]
		}
		keys[si], vals[si] = ks, vs
		for h := 0; h < nh; h++ {
			tasks = append(tasks, task{si, h})
		}
		row += len(s)
	}

	scale := 1 / math.Sqrt(float64(hd))
	window := l.SlidingWindow
	group := nh / nkv
	parallelFor(len(tasks), func(lo, hi int) {
		ws := attnScratchPool.Get().(*attnScratch)
		defer attnScratchPool.Put(ws)
		for _, tk := range tasks[lo:hi] {
			si, h := tk.seq, tk.head
			kh := h / group
			T, P := len(b.Seqs[si]), past[si]
			ks, vs := keys[si], vals[si]
			for t0 := 0; t0 < T; t0 += attnChunk {
				t1 := min(t0+attnChunk, T)
				rows := t1 - t0
				// Keys [first, end) are visible to some row of the chunk.
				first, end := 0, P+t1
				if window > 0 {
					first = max(0, P+t0-window+1)
				}
				span := end - first
				if rows < attnDirectRows {
					// Decoding: read the cached keys and values in place.
					ws.s = growF32(ws.s, span)
					for i := 0; i < rows; i++ {
						r := starts[si] + t0 + i
						qrow := q[r*qw+h*hd : r*qw+(h+1)*hd]
						last := P + t0 + i
						lo := 0
						if window > 0 {
							lo = max(0, last-window+1)
						}
						sc := ws.s[:last+1-lo]
						for j := range sc {
							s := (lo + j) * kw
							sc[j] = gemm.Dot(qrow, ks[s+kh*hd:s+(kh+1)*hd])
						}
						softmaxMasked(sc, 0, len(sc)-1, scale)
						orow := out[r*qw+h*hd : r*qw+(h+1)*hd]
						for j, p := range sc {
							s := (lo + j) * kw
							axpy(orow, p, vs[s+kh*hd:s+(kh+1)*hd])
						}
					}
					continue
				}
				ws.q = growF32(ws.q, rows*hd)
				for i := 0; i < rows; i++ {
					r := starts[si] + t0 + i
					copy(ws.q[i*hd:(i+1)*hd], q[r*qw+h*hd:r*qw+(h+1)*hd])
				}
				ws.k = growF32(ws.k, span*hd)
				ws.vt = growF32(ws.vt, hd*span)
				for j := 0; j < span; j++ {
					s := (first + j) * kw
					copy(ws.k[j*hd:(j+1)*hd], ks[s+kh*hd:s+(kh+1)*hd])
					for d, val := range vs[s+kh*hd : s+(kh+1)*hd] {
						ws.vt[d*span+j] = val
					}
				}
				ws.s = growF32(ws.s, rows*span)
				gemm.MulTF32(ws.s, ws.q, ws.k, rows, span, hd, false)
				for i := 0; i < rows; i++ {
					last := P + t0 + i // the row attends to keys [lo, last]
					lo := 0
					if window > 0 {
						lo = max(0, last-window+1)
					}
					softmaxMasked(ws.s[i*span:(i+1)*span], lo-first, last-first, scale)
				}
				ws.o = growF32(ws.o, rows*hd)
				gemm.MulTF32(ws.o, ws.s, ws.vt, rows, hd, span, false)
				for i := 0; i < rows; i++ {
					r := starts[si] + t0 + i
					copy(out[r*qw+h*hd:r*qw+(h+1)*hd], ws.o[i*hd:(i+1)*hd])
				}
			}
		}
	})
	return apply(l.Attn.O, out, n, hooks)
}

// softmaxMasked replaces row with softmax(scale·row[lo:hi+1]) in place,
// computed with float32-accurate exponentials summed in float64, and zeroes the entries
// outside [lo, hi].
func softmaxMasked(row []float32, lo, hi int, scale float64) {
	clear(row[:lo])
	clear(row[hi+1:])
	vals := row[lo : hi+1]
	maxs := vals[0]
	for _, v := range vals[1:] {
		if v > maxs {
			maxs = v
		}
	}
	var sum float64
	for i, v := range vals {
		e := exp32(float32((float64(v) - float64(maxs)) * scale))
		vals[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range vals {
		vals[i] *= inv
	}
}

// axpy sets y += a·x.
func axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}

// parallelFor splits [0, n) into contiguous chunks run on up to gemm.Threads() goroutines.
func parallelFor(n int, f func(lo, hi int)) {
	workers := min(gemm.Threads(), n)
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}
