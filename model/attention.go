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

// attention computes self-attention of layer l for the normed hidden states
// x [N, hidden] of the batch; it returns o_proj's output [N, hidden].
func (m *Model) attention(l *Layer, x []float32, b *Batch, hooks *Hooks) []float32 {
	c := m.Config
	n := len(x) / c.HiddenSize
	q := apply(l.Attn.Q, x, n, hooks)
	k := apply(l.Attn.K, x, n, hooks)
	v := apply(l.Attn.V, x, n, hooks)
	hd, nh, nkv := c.HeadDim, c.NumAttentionHeads, c.NumKeyValueHeads
	qw, kw := nh*hd, nkv*hd

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
	var tasks []task
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

	scale := float32(1 / math.Sqrt(float64(hd)))
	window := c.SlidingWindow
	group := nh / nkv
	parallelFor(len(tasks), func(lo, hi int) {
		var scores []float32
		for _, tk := range tasks[lo:hi] {
			si, h := tk.seq, tk.head
			kh := h / group
			T, P := len(b.Seqs[si]), past[si]
			ks, vs := keys[si], vals[si]
			for t := 0; t < T; t++ {
				qrow := q[(starts[si]+t)*qw+h*hd : (starts[si]+t)*qw+(h+1)*hd]
				last := P + t // attend to positions [first, last]
				first := 0
				if window > 0 && last-window+1 > 0 {
					first = last - window + 1
				}
				scores = scores[:0]
				maxs := float32(math.Inf(-1))
				for s := first; s <= last; s++ {
					sc := dot(qrow, ks[s*kw+kh*hd:s*kw+(kh+1)*hd]) * scale
					scores = append(scores, sc)
					maxs = max(maxs, sc)
				}
				var sum float64
				for i, sc := range scores {
					e := math.Exp(float64(sc - maxs))
					scores[i] = float32(e)
					sum += e
				}
				inv := float32(1 / sum)
				orow := out[(starts[si]+t)*qw+h*hd : (starts[si]+t)*qw+(h+1)*hd]
				for i, p := range scores {
					p *= inv
					vrow := vs[(first+i)*kw+kh*hd : (first+i)*kw+(kh+1)*hd]
					for d := range orow {
						orow[d] += p * vrow[d]
					}
				}
			}
		}
	})
	return apply(l.Attn.O, out, n, hooks)
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
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
