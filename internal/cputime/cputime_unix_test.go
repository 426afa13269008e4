//go:build unix

package cputime_test

import (
	"crypto/sha256"
	"testing"

	"github.com/dstream-io/dstream/internal/cputime"
)

func TestProcessGrows(t *testing.T) {
	before := cputime.Process()
	if before <= 0 {
		t.Fatalf("Process() = %v at start, want more than 0", before)
	}
	sum := make([]byte, 1<<20)
	for range 64 { // 64 MiB hashed: milliseconds of CPU at the least
		s := sha256.Sum256(sum)
		copy(sum, s[:])
	}
	if after := cputime.Process(); after <= before {
		t.Fatalf("Process() = %v after hashing, want more than %v", after, before)
	}
}
