package convert

import (
	"runtime"
	"sync"
)

// produceAhead computes the outputs of a plan on several goroutines while
// they are written in order by one: output i is started once the outputs
// before it have been started and the bytes in flight (computed, not yet
// written) leave room for it under a budget, so memory stays bounded by a
// few tensors whatever the model size. Every output is a pure function of
// the input, the options and the seed (each random draw has its own named
// stream, random.go), so the order outputs are computed in does not change
// a byte of the result.
type produceAhead struct {
	produce []func() ([]byte, error)
	size    []int64
	budget  int64

	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int64
	stopped  bool

	results []chan result
	stop    chan struct{}
	wg      sync.WaitGroup
}

type result struct {
	data []byte
	err  error
}

// workers is the number of goroutines computing outputs (GOMAXPROCS).
func workers() int { return runtime.GOMAXPROCS(0) }

// minBudget is the default number of bytes in flight (one tensor is
// always allowed, whatever its size).
const minBudget = 256 << 20

// startProduceAhead starts n goroutines computing produce[i] (of size[i]
// bytes) in order of i, with at most budget bytes in flight (0: minBudget).
// n ≤ 1 computes each output when it is asked for.
func startProduceAhead(produce []func() ([]byte, error), size []int64, n int, budget int64) *produceAhead {
	if budget <= 0 {
		budget = minBudget
	}
	p := &produceAhead{produce: produce, size: size, budget: budget, stop: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	if n <= 1 {
		return p
	}
	p.results = make([]chan result, len(produce))
	for i := range p.results {
		p.results[i] = make(chan result, 1)
	}
	next := make(chan int)
	p.wg.Add(1)
	go func() { // the dispatcher: hands out outputs in order, within the budget
		defer p.wg.Done()
		defer close(next)
		for i := range produce {
			if !p.acquire(size[i]) {
				return
			}
			select {
			case next <- i:
			case <-p.stop:
				return
			}
		}
	}()
	for w := 0; w < n; w++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := range next {
				data, err := produce[i]()
				p.results[i] <- result{data, err}
			}
		}()
	}
	return p
}

// acquire waits until n more bytes fit in the budget (always true when
// nothing is in flight); false once stopped.
func (p *produceAhead) acquire(n int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.stopped && p.inFlight > 0 && p.inFlight+n > p.budget {
		p.cond.Wait()
	}
	if p.stopped {
		return false
	}
	p.inFlight += n
	return true
}

// get returns output i's bytes; outputs are asked for in order.
func (p *produceAhead) get(i int) ([]byte, error) {
	if p.results == nil {
		return p.produce[i]()
	}
	r := <-p.results[i]
	return r.data, r.err
}

// written tells that output i is in the file: its bytes leave the budget.
func (p *produceAhead) written(i int) {
	if p.results == nil {
		return
	}
	p.mu.Lock()
	p.inFlight -= p.size[i]
	p.mu.Unlock()
	p.cond.Broadcast()
}

// close stops the goroutines (the outputs not yet asked for are dropped)
// and waits for them.
func (p *produceAhead) close() {
	if p.results == nil {
		return
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cond.Broadcast()
	close(p.stop)
	// Workers finish the output they are computing; results channels are
	// buffered, so none blocks.
	p.wg.Wait()
}
