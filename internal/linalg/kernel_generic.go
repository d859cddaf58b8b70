//go:build !amd64 || purego

package linalg

func archKernels() []*kernel { return nil }
