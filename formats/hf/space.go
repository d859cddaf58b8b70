package hf

import (
	"fmt"

	"github.com/moeforge/moeforge/formats/safetensors"
)

// ErrNoSpace is matched by the Writer's error when the file system holding
// the output has less free space than the checkpoint's tensors need.
var ErrNoSpace = fmt.Errorf("not enough free space")

// freeBytes is the space available to this user on the file system of dir
// (-1 when unknown); a variable so that tests can shrink it.
var freeBytes = statfsFree

// headerAllowance is what each shard's JSON header, the index and the
// documents may take beyond the tensor bytes, per tensor.
const headerAllowance = 256

// checkSpace refuses a plan whose bytes do not fit in dir's free space,
// before anything is written.
func checkSpace(dir string, plan []safetensors.Info) error {
	var need int64
	for _, in := range plan {
		need += in.ByteSize() + headerAllowance
	}
	free, err := freeBytes(dir)
	if err != nil || free < 0 {
		return nil // unknown: let the writes tell
	}
	if need > free {
		return fmt.Errorf("output %s: the checkpoint needs %s and its file system has %s free: %w (free some space or write the output elsewhere)",
			dir, humanBytes(need), humanBytes(free), ErrNoSpace)
	}
	return nil
}

// humanBytes writes n in decimal units, as df -H does.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= unit && u < 4 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %cB", v, " kMGT"[u])
}
