package gemm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedAssembly checks that the committed amd64 kernels of gemm and
// linalg (kernel_amd64.s and kernel_amd64_decl.go) are byte for byte what the
// avo program in internal/asm writes, so that nobody edits the output by hand
// or changes the generator without regenerating.
//
// It fetches nothing: it runs the generator with GOPROXY=off and skips when
// avo is not in the module cache (`cd internal/asm && go mod download` puts
// it there), unless MOEFORGE_REQUIRE_GENERATE=1, which makes that a failure.
func TestGeneratedAssembly(t *testing.T) {
	gobin, err := exec.LookPath("go") // go test puts its own go first in PATH
	if err != nil {
		t.Skip("no go command to run the generator")
	}
	for _, pkg := range []string{"gemm", "linalg"} {
		t.Run(pkg, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(gobin, "run", "-C", "../asm", ".", "-pkg", pkg)
			cmd.Env = append(os.Environ(), "MOEFORGE_ASM_DIR="+dir, "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOWORK=off")
			out, err := cmd.CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "GOPROXY=off") && os.Getenv("MOEFORGE_REQUIRE_GENERATE") != "1" {
					t.Skipf("avo is not in the module cache (cd internal/asm && go mod download): %s", out)
				}
				t.Fatalf("go run ../asm -pkg %s: %v\n%s", pkg, err, out)
			}
			for _, name := range []string{"kernel_amd64.s", "kernel_amd64_decl.go"} {
				want, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join("..", pkg, name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("internal/%s/%s differs from what internal/asm generates; run go generate ./internal/%s", pkg, name, pkg)
				}
			}
		})
	}
}
