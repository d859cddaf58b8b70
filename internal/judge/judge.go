// Package judge locates the pinned reference implementations under judges/
// (see judges/README.md) for tests that compare moeforge against them.
//
// It is imported only from _test.go files.
package judge

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Root returns the repository's judges/ directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "judges")
}

// Required reports whether a missing judge must fail the test instead of
// skipping it (MOEFORGE_REQUIRE_JUDGES=1, set by .ci/run).
func Required() bool { return os.Getenv("MOEFORGE_REQUIRE_JUDGES") == "1" }

// Dir returns judges/name when its node_modules are installed and node is on
// the PATH. Otherwise it skips the test, or fails it when Required.
func Dir(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(Root(), name)
	_, err := os.Stat(filepath.Join(dir, "node_modules"))
	if err == nil {
		_, err = exec.LookPath("node")
	}
	if err != nil {
		if Required() {
			t.Fatalf("judge %s not installed (run judges/install.sh): %v", name, err)
		}
		t.Skipf("judge %s not installed (run judges/install.sh): %v", name, err)
	}
	return dir
}
