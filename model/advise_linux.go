package model

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// advisor tells the kernel how a layer-major pass uses the weights' memory
// maps: the next layer is read into the page cache while the current layer
// computes; a finished layer is released with MADV_PAGEOUT when the model is
// larger than half the RAM (its pages would otherwise push out the next
// layer's), else MADV_COLD (first in line for reclaim, kept for the next
// run). Both keep the contents, so they are safe on any memory (a weight
// copied to the heap is read back, not zeroed). Errors (old kernels) are
// ignored: advice is only an optimization.
//
// Reading ahead uses MADV_POPULATE_READ (Linux 5.14), which returns once the
// pages are read, at the disk's sequential speed. MADV_WILLNEED is no
// substitute: the kernel caps it at one readahead window (read_ahead_kb,
// e.g. 8 MB) per call, so a whole layer (1.2 GB at Qwen1.5-MoE-A2.7B's shape)
// was faulted in by the computation itself, 4 KB-page by page, serializing
// reading and computing — measured on a 200 MB/s disk, eval ppl of the
// 28.6 GB model took 2.2 × the time cat needs to read it (bench/scale.sh with
// READ_MBPS=200). On older kernels prefetch touches one byte per page
// instead. One goroutine reads ahead, in compute order (two layers read at
// once compete for the disk with the one being computed); wait ends it.
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
					populate(b)
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

// populateChunk is how much one MADV_POPULATE_READ covers, so that wait
// (and a cancelled pass) is never more than one chunk's read away.
const populateChunk = 64 << 20

// noPopulate is set once the kernel refused MADV_POPULATE_READ.
var noPopulate atomic.Bool

// touched keeps the page touches of populate from being optimized away.
var touched atomic.Uint32

// populate reads b's pages into memory: MADV_POPULATE_READ a chunk at a
// time, or, where the kernel lacks it, a read of one byte per page.
func populate(b []byte) {
	for len(b) > 0 {
		n := min(len(b), populateChunk)
		if noPopulate.Load() || advise(b[:n], unix.MADV_POPULATE_READ) == unix.EINVAL {
			noPopulate.Store(true)
			var s byte
			for off := 0; off < n; off += int(pageSize) {
				s += b[off]
			}
			touched.Add(uint32(s))
		}
		b = b[n:]
	}
}

// advise applies advice to the whole pages inside b.
func advise(b []byte, advice int) error {
	if len(b) == 0 {
		return nil
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	first := (start + pageSize - 1) &^ (pageSize - 1)
	last := (start + uintptr(len(b))) &^ (pageSize - 1)
	if last <= first {
		return nil
	}
	return unix.Madvise(b[first-start:last-start], advice)
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
