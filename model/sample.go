package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
)

// SamplingOptions choose the next token from the logits the way
// transformers' generate does: repetition penalty, then temperature, top-k
// and top-p, then a draw from the softmax. Greedy decoding (the argmax,
// lowest id on a tie) when DoSample is false or Temperature is 0.
type SamplingOptions struct {
	DoSample          bool
	Temperature       float64 // > 0 when sampling; 0 means greedy
	TopK              int     // 0: off
	TopP              float64 // 1 (or 0): off
	RepetitionPenalty float64 // 1 (or 0): off
	Seed              uint64
}

// Greedy reports whether the options pick the argmax.
func (o SamplingOptions) Greedy() bool { return !o.DoSample || o.Temperature <= 0 }

// Validate checks the ranges transformers accepts.
func (o SamplingOptions) Validate() error {
	switch {
	case o.Temperature < 0 || math.IsNaN(o.Temperature):
		return fmt.Errorf("temperature %v must be ≥ 0", o.Temperature)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("top_p %v must be in [0, 1]", o.TopP)
	case o.TopK < 0:
		return fmt.Errorf("top_k %d must be ≥ 0", o.TopK)
	case o.RepetitionPenalty < 0 || math.IsNaN(o.RepetitionPenalty):
		return fmt.Errorf("repetition_penalty %v must be > 0", o.RepetitionPenalty)
	}
	return nil
}

// GenerationConfig is what generation_config.json says about decoding.
type GenerationConfig struct {
	Sampling     SamplingOptions
	EOS          []int // eos_token_id (generation_config.json, else config.json)
	MaxNewTokens int   // 0 when unset
}

// LoadGenerationConfig reads the decoding settings of the checkpoint
// directory dir, with transformers' defaults for what the file leaves out
// (do_sample false, temperature 1, top_k 50, top_p 1, repetition_penalty
// 1). A missing file gives the defaults.
func LoadGenerationConfig(dir string, m *Model) (GenerationConfig, error) {
	gc := GenerationConfig{Sampling: SamplingOptions{Temperature: 1, TopK: 50, TopP: 1, RepetitionPenalty: 1}}
	path, data, err := readGenerationConfig(dir)
	if err == nil {
		var f struct {
			DoSample          *bool    `json:"do_sample"`
			Temperature       *float64 `json:"temperature"`
			TopK              *int     `json:"top_k"`
			TopP              *float64 `json:"top_p"`
			RepetitionPenalty *float64 `json:"repetition_penalty"`
			MaxNewTokens      *int     `json:"max_new_tokens"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return gc, fmt.Errorf("%s: %v", path, err)
		}
		s := &gc.Sampling
		if f.DoSample != nil {
			s.DoSample = *f.DoSample
		}
		if f.Temperature != nil {
			s.Temperature = *f.Temperature
		}
		if f.TopK != nil {
			s.TopK = *f.TopK
		}
		if f.TopP != nil {
			s.TopP = *f.TopP
		}
		if f.RepetitionPenalty != nil {
			s.RepetitionPenalty = *f.RepetitionPenalty
		}
		if f.MaxNewTokens != nil {
			gc.MaxNewTokens = *f.MaxNewTokens
		}
		if err := s.Validate(); err != nil {
			return gc, fmt.Errorf("%s: %v", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return gc, err
	}
	if gc.EOS, err = EOSTokens(dir, m.Config); err != nil {
		return gc, err
	}
	return gc, nil
}

// Sampler picks tokens from logits. It is not safe for concurrent use; a
// sequence owns its sampler.
type Sampler struct {
	opt  SamplingOptions
	rng  *rand.Rand
	seen map[int]bool // tokens of the sequence so far (repetition penalty)

	idx   []int
	probs []float64
}

// NewSampler returns a sampler whose draws follow opt.Seed.
func NewSampler(opt SamplingOptions) *Sampler {
	return &Sampler{opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15)), seen: map[int]bool{}}
}

// Observe records tokens of the sequence (prompt and generated) for the
// repetition penalty.
func (s *Sampler) Observe(ids ...int) {
	if s.opt.RepetitionPenalty == 0 || s.opt.RepetitionPenalty == 1 {
		return
	}
	for _, id := range ids {
		s.seen[id] = true
	}
}

// Sample returns the next token for logits (modified in place) and
// observes it.
func (s *Sampler) Sample(logits []float32) int {
	if p := s.opt.RepetitionPenalty; p != 0 && p != 1 {
		for id := range s.seen {
			if id < 0 || id >= len(logits) {
				continue
			}
			if logits[id] < 0 {
				logits[id] *= float32(p)
			} else {
				logits[id] /= float32(p)
			}
		}
	}
	var next int
	if s.opt.Greedy() {
		next = argmax(logits)
	} else {
		next = s.draw(logits)
	}
	s.Observe(next)
	return next
}

// draw applies temperature, top-k and top-p and draws from the softmax of
// what is left.
func (s *Sampler) draw(logits []float32) int {
	n := len(logits)
	s.idx = s.idx[:0]
	for i := 0; i < n; i++ {
		s.idx = append(s.idx, i)
	}
	idx := s.idx
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	keep := n
	if k := s.opt.TopK; k > 0 && k < n {
		// ties with the k-th value are kept, as transformers' top-k does
		kth := logits[idx[k-1]]
		keep = k
		for keep < n && logits[idx[keep]] == kth {
			keep++
		}
	}
	t := s.opt.Temperature
	maxL := float64(logits[idx[0]]) / t
	if math.IsInf(maxL, 0) {
		// a temperature so small that the scaled logits overflow: the
		// softmax is all on the largest (greedy), not NaN
		return idx[0]
	}
	s.probs = s.probs[:0]
	var sum float64
	for _, id := range idx[:keep] {
		p := math.Exp(float64(logits[id])/t - maxL)
		s.probs = append(s.probs, p)
		sum += p
	}
	if p := s.opt.TopP; p > 0 && p < 1 {
		// keep the most likely tokens until their mass reaches top_p
		var cum float64
		for i, q := range s.probs {
			cum += q / sum
			if cum >= p {
				keep = i + 1
				break
			}
		}
		s.probs = s.probs[:keep]
		sum = 0
		for _, q := range s.probs {
			sum += q
		}
	}
	u := s.rng.Float64() * sum
	for i, q := range s.probs {
		u -= q
		if u < 0 {
			return idx[i]
		}
	}
	return idx[len(s.probs)-1]
}
