package convert

import (
	"fmt"
	"math"
	"slices"

	"github.com/moeforge/moeforge/internal/gemm"
)

// pickShared chooses the shared expert's S neurons from the contributions
// c [N, F]: the neurons with the largest total contribution, or (by
// frequency) those most often among a token's MarkerSize largest
// contributions (ties: larger total contribution, then lower index). It
// returns the shared and the routed neurons, each in increasing order.
func (r *carveRun) pickShared(c []float32, N int) (shared, routed []int32) {
	F, m := r.F, r.co.MarkerSize
	count := make([]int, F)
	mass := make([]float64, F)
	scratch := make([]float32, F)
	for t := 0; t < N; t++ {
		row := c[t*F : (t+1)*F]
		copy(scratch, row)
		thr := kthLargest(scratch, m)
		for n, v := range row {
			mass[n] += float64(v)
			if v >= thr {
				count[n]++
			}
		}
	}
	order := make([]int, F)
	for i := range order {
		order[i] = i
	}
	byFreq := r.co.SharedBy == CarveByFrequency
	slices.SortFunc(order, func(a, b int) int {
		if byFreq && count[a] != count[b] {
			return count[b] - count[a]
		}
		if d := cmpDesc(mass[a], mass[b]); d != 0 {
			return d
		}
		return a - b
	})
	for i, n := range order {
		if i < r.S {
			shared = append(shared, int32(n))
		} else {
			routed = append(routed, int32(n))
		}
	}
	slices.Sort(shared)
	slices.Sort(routed)
	return shared, routed
}

// kthLargest returns the k-th largest value of v (1-based), reordering v.
func kthLargest(v []float32, k int) float32 {
	lo, hi, want := 0, len(v)-1, k-1
	for lo < hi {
		p := v[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] > p {
				i++
			}
			for v[j] < p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return v[want]
		}
	}
	return v[want]
}

// maxClusterTokens caps the tokens whose activations describe a neuron for
// clustering (evenly strided over the calibration tokens).
const maxClusterTokens = 8192

// cluster splits the routed neurons into E clusters of exactly I neurons
// each, grouping neurons that are active on the same tokens: balanced
// k-means on each neuron's features over the calibration tokens (see
// CarveOptions.Features), seeded k-means++ start, capacity-constrained
// assignment (greedy by distance, then improving swaps). It returns each
// routed neuron's cluster and the number of iterations run.
func (r *carveRun) cluster(layer int, c []float32, N int, routed []int32) ([]int, int) {
	F, R, E, I := r.F, len(routed), r.E, r.I
	D := min(N, maxClusterTokens)
	f := make([]float32, R*D)
	for j := 0; j < D; j++ {
		t := j * N / D
		row := c[t*F : (t+1)*F]
		switch r.co.Features {
		case CarveBinary:
			thr := kthLargest(slices.Clone(row), r.co.MarkerSize)
			for k, n := range routed {
				if row[n] >= thr {
					f[k*D+j] = 1
				}
			}
		default:
			for k, n := range routed {
				f[k*D+j] = row[n]
			}
		}
	}
	for k := 0; k < R && r.co.Features == CarveUnit; k++ {
		v := f[k*D : (k+1)*D]
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		if ss > 0 {
			inv := float32(1 / math.Sqrt(ss))
			for i := range v {
				v[i] *= inv
			}
		}
	}
	norms := make([]float64, R)
	for k := range norms {
		norms[k] = sqNorm(f[k*D : (k+1)*D])
	}
	rng := newRNG(r.seed, fmt.Sprintf("carve/kmeans/%d", layer))

	// k-means++ start.
	mu := make([]float32, E*D)
	d2 := make([]float64, R)
	for k := range d2 {
		d2[k] = math.Inf(1)
	}
	pick := intN(rng, R)
	for e := 0; e < E; e++ {
		copy(mu[e*D:(e+1)*D], f[pick*D:(pick+1)*D])
		var sum float64
		for k := 0; k < R; k++ {
			d := sqDist(f[k*D:(k+1)*D], mu[e*D:(e+1)*D])
			d2[k] = math.Min(d2[k], d)
			sum += d2[k]
		}
		if e == E-1 {
			break
		}
		target := uniform(rng) * sum
		pick = R - 1
		for k := 0; k < R; k++ {
			target -= d2[k]
			if target < 0 {
				pick = k
				break
			}
		}
	}

	assign := make([]int, R)
	for k := range assign {
		assign[k] = -1
	}
	dot := make([]float32, R*E)
	dist := make([]float64, R*E)
	it := 0
	for it < r.co.Iterations {
		it++
		gemm.MulT(dot, f, gemm.F32{Data: mu, N: E, K: D}, R, false)
		for e := 0; e < E; e++ {
			me := sqNorm(mu[e*D : (e+1)*D])
			for k := 0; k < R; k++ {
				dist[k*E+e] = norms[k] - 2*float64(dot[k*E+e]) + me
			}
		}
		next := balancedAssign(dist, R, E, I)
		improveSwaps(next, dist, R, E)
		same := slices.Equal(next, assign)
		assign = next
		// Centroids: the mean of each cluster's members.
		clear(mu)
		for k, e := range assign {
			m := mu[e*D : (e+1)*D]
			for j, v := range f[k*D : (k+1)*D] {
				m[j] += v
			}
		}
		for i := range mu {
			mu[i] /= float32(I)
		}
		if same {
			break
		}
	}
	return assign, it
}

func sqNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return s
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i, x := range a {
		d := float64(x) - float64(b[i])
		s += d * d
	}
	return s
}

// balancedAssign gives each of R items one of E clusters, exactly cap items
// per cluster (R = E·cap), greedily by increasing distance dist [R, E]
// (ties: lower item, then lower cluster).
func balancedAssign(dist []float64, R, E, cap int) []int {
	pairs := make([]int, R*E)
	for i := range pairs {
		pairs[i] = i
	}
	slices.SortFunc(pairs, func(a, b int) int {
		if d := dist[a] - dist[b]; d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
		return a - b
	})
	assign := make([]int, R)
	for i := range assign {
		assign[i] = -1
	}
	fill := make([]int, E)
	left := R
	for _, p := range pairs {
		k, e := p/E, p%E
		if assign[k] >= 0 || fill[e] == cap {
			continue
		}
		assign[k] = e
		fill[e]++
		if left--; left == 0 {
			break
		}
	}
	return assign
}

// improveSwaps exchanges the clusters of two items while that lowers the
// total distance (keeps the cluster sizes), in deterministic sweeps.
func improveSwaps(assign []int, dist []float64, R, E int) {
	for sweep := 0; sweep < 8; sweep++ {
		changed := false
		for a := 0; a < R; a++ {
			for b := a + 1; b < R; b++ {
				ea, eb := assign[a], assign[b]
				if ea == eb {
					continue
				}
				gain := dist[a*E+ea] + dist[b*E+eb] - dist[a*E+eb] - dist[b*E+ea]
				if gain > 1e-12 {
					assign[a], assign[b] = eb, ea
					changed = true
				}
			}
		}
		if !changed {
			return
		}
	}
}

// refineTopK improves a balanced clustering for top-K routing directly:
// it swaps pairs of neurons between clusters while that raises
// J = Σ_t (mass of token t's K heaviest clusters) on the (strided)
// calibration tokens — the oracle coverage a router could reach. Per
// sweep it scores every single move n → b exactly against the current
// state, tries the most promising swaps (a move a → b paired with one
// b → a) in order of estimated gain, re-evaluates each exactly and keeps
// it when J rises. It returns the number of swaps made.
func (r *carveRun) refineTopK(c []float32, N int, routed []int32, assign []int, sweeps int) int {
	F, R, E, K := r.F, len(routed), r.E, r.K
	if K+2 > E || sweeps <= 0 {
		return 0
	}
	T := min(N, maxClusterTokens)
	x := make([]float64, T*R) // routed contributions of the strided tokens
	for j := 0; j < T; j++ {
		row := c[(j*N/T)*F:]
		for k, n := range routed {
			x[j*R+k] = float64(row[n])
		}
	}
	M := make([]float64, T*E)
	for t := 0; t < T; t++ {
		for k, e := range assign {
			M[t*E+e] += x[t*R+k]
		}
	}
	// Token t's K+2 heaviest clusters are cached with the prefix sums of
	// their masses: with at most two clusters changed, the K heaviest
	// unchanged ones are among them.
	L := min(K+2, E)
	val := make([]float64, T*L)     // masses, heaviest first
	pre := make([]float64, T*(L+1)) // prefix sums of val
	pos := make([]int16, T*E)       // position of a cluster in val, or L
	idx := make([]int, E)
	cache := func(t int) {
		m := M[t*E : (t+1)*E]
		for e := range idx {
			idx[e] = e
		}
		slices.SortFunc(idx, func(a, b int) int {
			if d := cmpDesc(m[a], m[b]); d != 0 {
				return d
			}
			return a - b
		})
		p := pos[t*E : (t+1)*E]
		for e := range p {
			p[e] = int16(L)
		}
		for i := 0; i < L; i++ {
			e := idx[i]
			val[t*L+i] = m[e]
			pre[t*(L+1)+i+1] = pre[t*(L+1)+i] + m[e]
			p[e] = int16(i)
		}
	}
	for t := 0; t < T; t++ {
		cache(t)
	}
	// restTop is the sum of the q heaviest cached clusters of token t other
	// than those at positions pa < pb (L: not cached).
	restTop := func(t, q, pa, pb int) float64 {
		qq := q
		if pa < qq {
			qq++
		}
		if pb < qq {
			qq++
		}
		s := pre[t*(L+1)+qq]
		if pa < qq {
			s -= val[t*L+pa]
		}
		if pb < qq {
			s -= val[t*L+pb]
		}
		return s
	}
	// topSum is token t's top-K mass with clusters a ≠ b at masses ma, mb:
	// the best split of the K between the unchanged clusters and the two.
	topSum := func(t, a, b int, ma, mb float64) float64 {
		pa, pb := int(pos[t*E+a]), int(pos[t*E+b])
		if pa > pb {
			pa, pb = pb, pa
		}
		if ma < mb {
			ma, mb = mb, ma
		}
		best := restTop(t, K, pa, pb)
		if s := restTop(t, K-1, pa, pb) + ma; s > best {
			best = s
		}
		if K >= 2 {
			if s := restTop(t, K-2, pa, pb) + ma + mb; s > best {
				best = s
			}
		}
		return best
	}
	cur := make([]float64, T)
	for t := 0; t < T; t++ {
		cur[t] = pre[t*(L+1)+K]
	}
	swapGain := func(n, m int) float64 { // n ∈ a → b, m ∈ b → a
		a, b := assign[n], assign[m]
		var g float64
		for t := 0; t < T; t++ {
			d := x[t*R+m] - x[t*R+n]
			if d == 0 {
				continue
			}
			g += topSum(t, a, b, M[t*E+a]+d, M[t*E+b]-d) - cur[t]
		}
		return g
	}
	swaps := 0
	gain := make([]float64, R*E)
	type cand struct {
		n, m int
		g    float64
	}
	for sweep := 0; sweep < sweeps; sweep++ {
		// Exact single-move gains against the current state. For a token
		// and a source cluster a, the unchanged clusters' top sums are the
		// same for every target b outside the cache: computed once.
		clear(gain)
		for t := 0; t < T; t++ {
			mt := M[t*E : (t+1)*E]
			pt := pos[t*E : (t+1)*E]
			c0 := cur[t]
			for a := 0; a < E; a++ {
				pa := int(pt[a])
				r0, r1, r2 := restTop(t, K, pa, L), restTop(t, K-1, pa, L), math.Inf(-1)
				if K >= 2 {
					r2 = restTop(t, K-2, pa, L)
				}
				for k := 0; k < R; k++ {
					if assign[k] != a {
						continue
					}
					v := x[t*R+k]
					if v == 0 {
						continue
					}
					ma := mt[a] - v
					g := gain[k*E : (k+1)*E]
					for b := 0; b < E; b++ {
						if b == a {
							continue
						}
						mb := mt[b] + v
						if pt[b] < int16(L) {
							g[b] += topSum(t, a, b, ma, mb) - c0
							continue
						}
						hi, lo := ma, mb
						if hi < lo {
							hi, lo = lo, hi
						}
						best := r0
						if s := r1 + hi; s > best {
							best = s
						}
						if s := r2 + hi + lo; s > best {
							best = s
						}
						g[b] += best - c0
					}
				}
			}
		}
		// Best movers of every cluster towards every other cluster.
		const per = 3
		var cands []cand
		for a := 0; a < E; a++ {
			for b := a + 1; b < E; b++ {
				best := func(from, to int) []int {
					var ks []int
					for k, e := range assign {
						if e == from {
							ks = append(ks, k)
						}
					}
					slices.SortStableFunc(ks, func(p, q int) int { return cmpDesc(gain[p*E+to], gain[q*E+to]) })
					return ks[:min(per, len(ks))]
				}
				for _, n := range best(a, b) {
					for _, m := range best(b, a) {
						if g := gain[n*E+b] + gain[m*E+a]; g > 0 {
							cands = append(cands, cand{n, m, g})
						}
					}
				}
			}
		}
		slices.SortStableFunc(cands, func(p, q cand) int { return cmpDesc(p.g, q.g) })
		moved := make([]bool, R)
		made := 0
		for _, cd := range cands {
			if moved[cd.n] || moved[cd.m] {
				continue
			}
			g := swapGain(cd.n, cd.m)
			if g <= 1e-9*float64(T) {
				continue
			}
			a, b := assign[cd.n], assign[cd.m]
			for t := 0; t < T; t++ {
				d := x[t*R+cd.m] - x[t*R+cd.n]
				if d == 0 {
					continue
				}
				M[t*E+a] += d
				M[t*E+b] -= d
				cache(t)
				cur[t] = pre[t*(L+1)+K]
			}
			assign[cd.n], assign[cd.m] = b, a
			moved[cd.n], moved[cd.m] = true, true
			made++
		}
		swaps += made
		if made == 0 {
			break
		}
	}
	return swaps
}
