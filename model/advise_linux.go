package model

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// advisor tells the kernel how a layer-major pass uses the weights' memory
// maps: MADV_WILLNEED on the next layer starts reading it from the file
// while the current layer computes; a finished layer is released with
// MADV_PAGEOUT when the model is larger than half the RAM (its pages would
// otherwise push out the next layer's), else MADV_COLD (first in line for
// reclaim, kept for the next run). Both keep the contents, so they are safe
// on any memory (a weight copied to the heap is read back, not zeroed).
// Errors (old kernels) are ignored: advice is only an optimization.
//
// MADV_WILLNEED submits the reads before it returns (about a second per GB),
// so prefetch queues it to one goroutine that reads ahead in order (two
// layers read at once compete for the disk with the one being computed);
// wait ends it.
type advisor struct {
	releaseAdvice int
	queue         chan [][]byte
	wg            sync.WaitGroup
}

func newAdvisor(m *Model) *advisor {
	var total int64
	add := func(bs [][]byte) {
		for _, b := range bs {
			total += int64(len(b))
		}
	}
	add(matrixBytes(m.Embeddings))
	add(matrixBytes(m.LMHead.W))
	for i := range m.Layers {
		add(m.layerBytes(i))
	}
	a := &advisor{releaseAdvice: unix.MADV_COLD}
	if ram := memTotal(); ram > 0 && total > ram/2 {
		a.releaseAdvice = unix.MADV_PAGEOUT
	}
	return a
}

func (a *advisor) prefetch(bs [][]byte) {
	if a.queue == nil {
		q := make(chan [][]byte, 4)
		a.queue = q
		a.wg.Add(1)
		go func() { // one reader: the layers are read ahead in compute order
			defer a.wg.Done()
			for bs := range q {
				for _, b := range bs {
					advise(b, unix.MADV_WILLNEED)
				}
			}
		}()
	}
	a.queue <- bs
}

func (a *advisor) wait() {
	if a.queue != nil {
		close(a.queue)
		a.queue = nil
	}
	a.wg.Wait()
}

func (a *advisor) release(bs [][]byte) {
	for _, b := range bs {
		advise(b, a.releaseAdvice)
	}
}

var pageSize = uintptr(os.Getpagesize())

// advise applies advice to the whole pages inside b.
func advise(b []byte, advice int) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	first := (start + pageSize - 1) &^ (pageSize - 1)
	last := (start + uintptr(len(b))) &^ (pageSize - 1)
	if last <= first {
		return
	}
	unix.Madvise(b[first-start:last-start], advice)
}

// memTotal is the machine's RAM in bytes (MemTotal of /proc/meminfo), 0
// when unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
