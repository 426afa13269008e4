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
// A target percent suits a small live heap, not a large one: state of
// millions of keys is long-lived, and letting the heap grow four times past
// it between collections holds gigabytes for nothing. Bound keeps the
// headroom (the heap allowed past the live heap) under MaxHeadroom by
// lowering the percent as the live heap grows. Large state is mostly
// pointer-free arrays, which the collector does not scan, so the extra
// cycles cost little.
//
// The GOGC and GOMEMLIMIT variables, when set, win: they are how an operator
// tunes any Go program.
package gcpolicy

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPercent is dstream's collector target percent.
const DefaultPercent = 400

// LimitShare is the share of the container's memory limit the Go heap may
// use: the rest is for memory the Go heap does not count (stacks, buffers
// of the runtime, the binary).
const LimitShare = 0.8

// MaxHeadroom bounds the heap the collector lets grow past the live heap:
// with 400% and a live heap of 100 MiB the heap may reach 500 MiB; with a
// live heap of 1 GiB the percent falls to 50, for 1.5 GiB rather than 5.
const MaxHeadroom = 512 << 20

// minPercent is the lowest percent Bound sets: below it the collector would
// run nearly back to back.
const minPercent = 25

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

// percentFor is the target percent that keeps a live heap's headroom
// within MaxHeadroom: percent itself while live is small.
func percentFor(percent int, live uint64) int {
	if live == 0 || live*uint64(percent)/100 <= MaxHeadroom {
		return percent
	}
	return max(minPercent, int(MaxHeadroom*100/live))
}

// Bounded reports whether Bound adjusts the percent: not when GOGC set it
// (the operator chose it).
func (p Policy) Bounded() bool { return p.PercentFrom != "GOGC" && p.Percent > 0 }

// StartBound runs Bound on a goroutine of its own until stop, which waits
// for it.
func (p Policy) StartBound(ctx context.Context, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.Bound(ctx, interval) })
	return func() { cancel(); wg.Wait() }
}

// Bound lowers the target percent as the live heap grows, so that the
// heap's headroom stays within MaxHeadroom, until ctx ends; it samples the
// live heap every interval (the collector's own figure, as of its last
// cycle). It does nothing unless Bounded.
func (p Policy) Bound(ctx context.Context, interval time.Duration) {
	if !p.Bounded() {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := p.Percent
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // a runtime without the metric: keep the percent
		}
		if want := percentFor(p.Percent, sample[0].Value.Uint64()); want != current {
			debug.SetGCPercent(want)
			current = want
		}
	}
}
