package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryLinksNoTesting: test helpers live in packages only tests import
// (internal/fixture/fixturetest), so the testing package and its flags stay
// out of the binary.
func TestBinaryLinksNoTesting(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the binary's dependencies")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/moeforge/moeforge/cmd/moeforge").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if deps := strings.Fields(string(out)); slices.Contains(deps, "testing") {
		t.Error("the moeforge binary imports package testing; move test helpers into a package only tests import")
	}
}
