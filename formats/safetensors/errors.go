package safetensors

import (
	"errors"
	"os"
)

// ErrFormat is matched (errors.Is) by every error that reports malformed or
// inconsistent input in moeforge's format packages: a truncated or corrupt
// safetensors file, a bad index, a config.json or GPTQ tensor that does not
// fit its format. Errors about missing files wrap os.ErrNotExist instead.
var ErrFormat = errors.New("malformed input")

// CorruptInputError reports malformed content of an input file, in one line
// that names the file and the tensor or key at fault (as
// compress/flate.CorruptInputError does for a stream offset). It matches
// ErrFormat.
type CorruptInputError struct {
	File string // the file or directory at fault; may be empty when a caller adds it
	Msg  string // what is wrong, naming the tensor or key
}

func (e *CorruptInputError) Error() string {
	if e.File == "" {
		return e.Msg
	}
	return e.File + ": " + e.Msg
}

// Is reports whether target is ErrFormat.
func (e *CorruptInputError) Is(target error) bool { return target == ErrFormat }

// Corrupt returns a CorruptInputError for file with the message msg.
func Corrupt(file, msg string) error { return &CorruptInputError{File: file, Msg: msg} }

// NotFoundError reports a missing input path in one line naming it; it
// matches os.ErrNotExist.
type NotFoundError struct {
	Path string
	Msg  string // what is missing or expected there
}

func (e *NotFoundError) Error() string { return e.Path + ": " + e.Msg }

// Is reports whether target is os.ErrNotExist.
func (e *NotFoundError) Is(target error) bool { return target == os.ErrNotExist }
