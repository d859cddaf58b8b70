// Command moeforge turns Hugging Face checkpoints into fine-grained
// Mixture-of-Experts models, quantizes them with GPTQ and verifies them.
//
// This package is thin: it parses flags, calls the libraries and maps errors
// to exit codes (0 success, 1 failure such as a parity check that failed,
// 2 usage or input error).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moeforge/moeforge/formats/safetensors"
	"github.com/moeforge/moeforge/internal/gemm"
	"github.com/moeforge/moeforge/internal/outdir"
)

// commands holds the constructors of the subcommands; each command's file
// registers itself from init so that files do not have to touch each other.
var commands []func() *cobra.Command

func addCommand(f func() *cobra.Command) { commands = append(commands, f) }

// failure marks an error as a failed check (exit code 1) rather than bad
// input or usage (exit code 2).
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// failed wraps err so that the process exits with code 1.
func failed(err error) error { return failure{err} }

// errSilentFailure exits with code 1 without printing anything more: the
// command has already reported what failed.
var errSilentFailure = errors.New("check failed")

// signalDrains is set by a command that shuts down by itself when its
// context is cancelled (serve drains its requests): the first SIGINT or
// SIGTERM then only cancels the context, a second one exits at once.
var signalDrains atomic.Bool

type globalOptions struct {
	quiet   bool
	threads int
}

var global globalOptions

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "moeforge",
		Short: "Build fine-grained MoE models from Hugging Face checkpoints, quantize them with GPTQ, verify them",
		Long: `moeforge turns dense Qwen2 checkpoints into fine-grained Qwen2-MoE models (exact and
training-oriented initializations), splits coarse MoE experts into finer ones, quantizes MoE
checkpoints with GPTQ int4 in the AutoGPTQ layout, and verifies any two checkpoints against
each other by running the full forward pass on the same tokens.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			gemm.SetThreads(global.threads)
		},
	}
	root.PersistentFlags().BoolVarP(&global.quiet, "quiet", "q", false, "print only results and errors")
	root.PersistentFlags().IntVar(&global.threads, "threads", 0, "cap on worker threads (0 = all cores)")
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the command line and returns the process exit code.
func run(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// On SIGINT/SIGTERM remove every unfinished output directory and exit:
	// outputs are only ever renamed into place when complete. A resume
	// state (quantize's finished layers) stays for --resume.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			if signalDrains.Load() {
				cancel()
				// the command shuts down by itself; a second signal exits now
				if _, ok := <-sigs; !ok {
					return
				}
			}
			// Before cancel: the command's deferred Abort must find the
			// resume state already kept.
			kept := outdir.Interrupt()
			cancel()
			fmt.Fprintln(os.Stderr, "moeforge: interrupted; unfinished outputs removed")
			for _, dir := range kept {
				fmt.Fprintf(os.Stderr, "moeforge: the finished layers are kept in %s: the same command with --resume continues from there\n", dir)
			}
			os.Exit(130)
		}
	}()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if errors.Is(err, errSilentFailure) {
		return 1
	}
	fmt.Fprintln(os.Stderr, "moeforge: "+err.Error())
	return exitCode(err)
}

// exitCode maps an error to the process exit code: 1 for a failed check
// (failure), 2 for bad input — a malformed file (safetensors.ErrFormat,
// which every format package's corrupt-input errors match), a missing path
// (os.ErrNotExist) — and for usage errors and everything else.
func exitCode(err error) int {
	var f failure
	switch {
	case errors.As(err, &f):
		return 1
	case errors.Is(err, safetensors.ErrFormat), errors.Is(err, os.ErrNotExist):
		return 2
	}
	return 2
}
