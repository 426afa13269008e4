// Package gcpolicy sets the Go garbage collector for a stream processor.
//
// A processor's live heap is its state plus the batches in flight, and it
// allocates the records of every batch anew: with Go's default (GOGC=100)
// the collector runs every time the heap grows by its live size, and on a
// catch-up run it takes a fifth of the CPU. A higher target percent makes it
// run less often, for more memory; a memory limit, from the container's
// cgroup when there is one, keeps that memory bounded: the collector works
// harder as the heap nears the limit rather than letting it pass.
//
// The GOGC and GOMEMLIMIT variables, when set, win: they are how an operator
// tunes any Go program.
package gcpolicy

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultPercent is dstream's collector target percent.
const DefaultPercent = 400

// LimitShare is the share of the container's memory limit the Go heap may
// use: the rest is for memory the Go heap does not count (stacks, buffers
// of the runtime, the binary).
const LimitShare = 0.8

// Policy is what Apply set.
type Policy struct {
	Percent int // the target percent in effect
	// PercentFrom says what chose it: "GOGC" or "default".
	PercentFrom string
	// MemoryLimit is the soft limit in bytes (math.MaxInt64: none).
	MemoryLimit int64
	// LimitFrom says what chose it: "GOMEMLIMIT", "cgroup" or "none".
	LimitFrom string
}

// Apply sets the target percent unless GOGC is set, and a memory limit of
// LimitShare of the cgroup's limit (read under cgroupRoot, normally
// /sys/fs/cgroup) unless GOMEMLIMIT is set or there is no limit.
func Apply(percent int, cgroupRoot string) Policy {
	p := Policy{PercentFrom: "GOGC", LimitFrom: "GOMEMLIMIT"}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
		p.PercentFrom = "default"
	}
	p.Percent = debug.SetGCPercent(-1)
	debug.SetGCPercent(p.Percent)
	if os.Getenv("GOMEMLIMIT") == "" {
		p.LimitFrom = "none"
		if limit, ok := cgroupLimit(cgroupRoot); ok {
			debug.SetMemoryLimit(int64(float64(limit) * LimitShare))
			p.LimitFrom = "cgroup"
		}
	}
	p.MemoryLimit = debug.SetMemoryLimit(-1)
	return p
}

// cgroupLimit reads the memory limit of this process's cgroup: memory.max
// (cgroup v2) or memory/memory.limit_in_bytes (v1). "max", and v1's huge
// values that stand for none, are no limit.
func cgroupLimit(root string) (int64, bool) {
	for _, name := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
