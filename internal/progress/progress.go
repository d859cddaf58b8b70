// Package progress draws progress bars for long work on a terminal. When the
// output is not a terminal (CI logs, pipes) nothing is drawn, so scripts and
// --json output stay clean.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar is a progress bar. A nil *Bar is valid and draws nothing.
type Bar struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	total   int
	done    int
	start   time.Time
	last    time.Time
	unit    string
	drawn   bool
	enabled bool
}

// New returns a bar over total steps drawn on w when w is a terminal and
// quiet is false; otherwise a bar that draws nothing.
func New(w io.Writer, quiet bool, label string, total int, unit string) *Bar {
	enabled := !quiet && IsTerminal(w)
	return &Bar{w: w, label: label, total: total, unit: unit, start: time.Now(), enabled: enabled}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Add advances the bar by n steps.
func (b *Bar) Add(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.draw(false)
}

// Set moves the bar to done steps.
func (b *Bar) Set(done int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	b.draw(false)
}

// Label changes the text shown before the bar.
func (b *Bar) Label(label string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.label = label
	b.draw(false)
}

// Done finishes the bar and moves to the next line.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.enabled && b.drawn {
		b.draw(true)
		fmt.Fprintln(b.w)
	}
	b.enabled = false
}

func (b *Bar) draw(force bool) {
	if !b.enabled {
		return
	}
	now := time.Now()
	if !force && b.drawn && now.Sub(b.last) < 100*time.Millisecond && b.done < b.total {
		return
	}
	b.last, b.drawn = now, true
	const width = 30
	frac := 0.0
	if b.total > 0 {
		frac = min(float64(b.done)/float64(b.total), 1)
	}
	fill := int(frac * width)
	elapsed := now.Sub(b.start).Seconds()
	rate := ""
	if elapsed > 0 && b.unit != "" {
		rate = fmt.Sprintf(" %.1f %s/s", float64(b.done)/elapsed, b.unit)
	}
	eta := ""
	if frac > 0 && frac < 1 {
		eta = fmt.Sprintf(" eta %s", time.Duration(elapsed/frac*(1-frac)*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(b.w, "\r\033[K%s [%s%s] %d/%d%s%s", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), b.done, b.total, rate, eta)
}
