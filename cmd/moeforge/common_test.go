package main

import "testing"

// TestScaled: the one number formatter in each style the commands use.
func TestScaled(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{convertCount(999), "999"},
		{convertCount(1000), "1K"},
		{convertCount(1234567), "1.23M"},
		{convertCount(14315784192), "14.3B"},
		{convertBytes(999), "999 B"},
		{convertBytes(1000), "1 kB"},
		{convertBytes(12345678), "12.3 MB"},
		{convertBytes(2_500_000_000), "2.5 GB"},
		{humanCount(999_999), "1000.00 K"},
		{humanBytes(1_000_000), "1.00 MB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
