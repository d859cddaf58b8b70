package serve

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moeforge/moeforge/model"
)

// Finish reasons, as the OpenAI API names them.
const (
	FinishStop   = "stop"   // an eos token or a stop string
	FinishLength = "length" // max_tokens or the model's context
)

// Request is one sequence for the Engine to generate.
type Request struct {
	Prompt    []int
	MaxTokens int
	EOS       []int
	Sampler   *model.Sampler
	// Tokens receives every generated token (an eos token included) and is
	// closed when generation ends. Its buffer must hold MaxTokens tokens, so
	// that the engine never waits on a slow reader.
	Tokens chan int
	// Finish is set before Tokens is closed.
	Finish string
	Err    error

	ctx   context.Context
	cache *model.KVCache
	next  []int // tokens to feed in the next step
	rest  []int // prompt tokens still to feed after next (chunked prefill)
	n     int   // tokens generated
	eos   map[int]bool
	start time.Time
	first time.Duration // time to the first token
}

// PrefillChunk is the most prompt tokens one sequence feeds per step: a
// long prompt is processed over several steps, so that the sequences
// decoding beside it keep producing tokens while it is read.
const PrefillChunk = 256

// ErrQueueFull is returned by Submit when the waiting queue is full.
var ErrQueueFull = errors.New("the request queue is full")

// ErrShuttingDown is returned by Submit once Close has been called.
var ErrShuttingDown = errors.New("the server is shutting down")

// Engine runs continuous batching: every step is one forward pass over all
// active sequences (new prompts and one decode token of each running
// sequence), each with its own KV cache; sequences join as soon as there
// is room and leave when they finish or their client goes away.
type Engine struct {
	m        *model.Model
	maxBatch int
	queue    chan *Request
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	mu       sync.Mutex

	// Stats, read with Stats.
	steps, tokens, stepSeqs atomic.Int64
	active                  atomic.Int64
}

// NewEngine starts an engine over m that runs up to maxBatch sequences per
// step and keeps up to maxQueue more waiting.
func NewEngine(m *model.Model, maxBatch, maxQueue int) *Engine {
	e := &Engine{m: m, maxBatch: max(maxBatch, 1), queue: make(chan *Request, max(maxQueue, 0)),
		stop: make(chan struct{}), done: make(chan struct{})}
	go e.loop()
	return e
}

// Submit queues r; generation stops early when ctx is cancelled.
func (e *Engine) Submit(ctx context.Context, r *Request) error {
	if e.closed.Load() {
		return ErrShuttingDown
	}
	r.ctx = ctx
	r.eos = map[int]bool{}
	for _, id := range r.EOS {
		r.eos[id] = true
	}
	r.start = time.Now()
	select {
	case e.queue <- r:
		return nil
	default:
		return ErrQueueFull
	}
}

// Close refuses new requests, lets the running and queued ones finish
// (or be cancelled by their contexts) and returns when the engine has
// stopped or ctx is done.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.CompareAndSwap(false, true) {
		close(e.stop)
	}
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats reports forward steps, generated tokens and the mean number of
// sequences per step.
type Stats struct {
	Steps, Tokens int64
	MeanBatch     float64
	Active        int64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{Steps: e.steps.Load(), Tokens: e.tokens.Load(), Active: e.active.Load()}
	if s.Steps > 0 {
		s.MeanBatch = float64(e.stepSeqs.Load()) / float64(s.Steps)
	}
	return s
}

func (e *Engine) admit(r *Request, active []*Request) []*Request {
	if r.ctx.Err() != nil {
		r.Err = r.ctx.Err()
		close(r.Tokens)
		return active
	}
	r.cache = e.m.NewKVCache()
	r.next, r.rest = r.Prompt, nil
	if len(r.next) > PrefillChunk {
		r.next, r.rest = r.Prompt[:PrefillChunk], r.Prompt[PrefillChunk:]
	}
	if r.Sampler != nil {
		r.Sampler.Observe(r.Prompt...)
	}
	return append(active, r)
}

func (e *Engine) loop() {
	defer close(e.done)
	var active []*Request
	stopping := false
	for {
		if len(active) == 0 {
			if stopping && len(e.queue) == 0 {
				return
			}
			select {
			case r := <-e.queue:
				active = e.admit(r, active)
			case <-e.stop:
				stopping = true
			}
			continue
		}
	fill:
		for len(active) < e.maxBatch {
			select {
			case r := <-e.queue:
				active = e.admit(r, active)
			default:
				break fill
			}
		}
		// drop sequences whose client went away
		kept := active[:0]
		for _, r := range active {
			if err := r.ctx.Err(); err != nil {
				r.Err = err
				close(r.Tokens)
				continue
			}
			kept = append(kept, r)
		}
		active = kept
		e.active.Store(int64(len(active)))
		if len(active) == 0 {
			continue
		}
		seqs := make([][]int, len(active))
		caches := make([]*model.KVCache, len(active))
		for i, r := range active {
			seqs[i], caches[i] = r.next, r.cache
		}
		logits, err := e.m.StepLogits(context.Background(), seqs, caches)
		e.steps.Add(1)
		e.stepSeqs.Add(int64(len(active)))
		if err != nil {
			for _, r := range active {
				r.Err = err
				close(r.Tokens)
			}
			active = active[:0]
			continue
		}
		maxPos := e.m.Config.MaxPositionEmbeddings
		kept = active[:0]
		for i, r := range active {
			if len(r.rest) > 0 { // more of the prompt to feed: nothing to sample yet
				n := min(len(r.rest), PrefillChunk)
				r.next, r.rest = r.rest[:n], r.rest[n:]
				kept = append(kept, r)
				continue
			}
			var next int
			if r.Sampler != nil {
				next = r.Sampler.Sample(logits[i])
			} else {
				next = argmax(logits[i])
			}
			if r.n == 0 {
				r.first = time.Since(r.start)
			}
			r.n++
			e.tokens.Add(1)
			r.Tokens <- next
			switch {
			case r.eos[next]:
				r.Finish = FinishStop
			case r.n >= r.MaxTokens, maxPos > 0 && r.cache.Len >= maxPos:
				r.Finish = FinishLength
			default:
				r.next = []int{next}
				kept = append(kept, r)
				continue
			}
			close(r.Tokens)
		}
		active = kept
		e.active.Store(int64(len(active)))
	}
}

// FirstTokenLatency is the time from Submit to the first generated token.
func (r *Request) FirstTokenLatency() time.Duration { return r.first }

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
