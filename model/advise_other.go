//go:build !linux

package model

// advisor does nothing where memory advice is not wired up.
type advisor struct{}

func newAdvisor(*Model) *advisor   { return &advisor{} }
func (*advisor) prefetch([][]byte) {}
func (*advisor) release([][]byte)  {}
func (*advisor) wait()             {}
