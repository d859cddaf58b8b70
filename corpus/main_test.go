package corpus

import (
	"os"
	"testing"

	"github.com/moeforge/moeforge/internal/fixture/fixturetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixturetest.Cleanup()
	os.Exit(code)
}
