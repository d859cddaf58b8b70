//go:build unix

package outdir

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// processStart is pid's start time in clock ticks after boot (field 22 of
// /proc/PID/stat), which tells a reused PID from the original owner; "-"
// where /proc is unavailable.
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "-"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return "-"
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "-"
	}
	return f[19] // fields after the name start at field 3: 22 − 3 = 19
}

// ownerAlive reports whether process pid, started at start, still runs.
func ownerAlive(pid int, start string) bool {
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false
	}
	if start != "" && start != "-" {
		if now := processStart(pid); now != "-" && now != start {
			return false // the PID was reused by another process
		}
	}
	return true // running (or not ours to signal: EPERM)
}
