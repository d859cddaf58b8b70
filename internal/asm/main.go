// Command asm generates the amd64 assembly of the moeforge kernels with avo
// (github.com/mmcloughlin/avo): one Go description per kernel family, from
// which every variant (element type, vector width, tile shape, how 16-bit
// inputs are widened) is written out, instead of hand-copied twins.
//
// It is its own module so that avo is not a dependency of moeforge. Run it
// through go generate in the package it writes for:
//
//	go generate ./internal/gemm ./internal/linalg
//
// which runs `go run . -pkg gemm` (or linalg) here and writes
// ../gemm/kernel_amd64.s with the Go declarations in
// ../gemm/kernel_amd64_decl.go. MOEFORGE_ASM_DIR redirects both files to
// another directory (the packages' tests use it to check that the committed
// files are what this generator writes).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/mmcloughlin/avo/build"
)

func main() {
	flag.Parse()
	pkg := flag.Lookup("pkg").Value.String()
	dir := os.Getenv("MOEFORGE_ASM_DIR")
	if dir == "" {
		dir = filepath.Join("..", pkg)
	}
	switch pkg {
	case "gemm":
		gemmKernels()
	case "linalg":
		linalgKernels()
	default:
		fmt.Fprintf(os.Stderr, "asm: -pkg must be gemm or linalg, not %q\n", pkg)
		os.Exit(2)
	}
	for name, file := range map[string]string{"out": "kernel_amd64.s", "stubs": "kernel_amd64_decl.go"} {
		if err := flag.Set(name, filepath.Join(dir, file)); err != nil {
			fmt.Fprintln(os.Stderr, "asm:", err)
			os.Exit(2)
		}
	}
	ConstraintExpr("amd64,!purego")
	Generate()
}
