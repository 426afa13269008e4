package gcpolicy

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// restore puts the collector back as it was after a test changed it.
func restore(t *testing.T) {
	percent := debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func cgroup(t *testing.T, files map[string]string) string {
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestApply(t *testing.T) {
	const gib = 1 << 30
	for _, test := range []struct {
		name       string
		gogc       string
		gomemlimit string
		files      map[string]string
		want       Policy
	}{
		{"no cgroup", "", "", nil, Policy{400, "default", math.MaxInt64, "none"}},
		{"cgroup v2 limit", "", "", map[string]string{"memory.max": "1073741824\n"},
			Policy{400, "default", share(gib), "cgroup"}},
		{"cgroup v2 without limit", "", "", map[string]string{"memory.max": "max\n"}, Policy{400, "default", math.MaxInt64, "none"}},
		{"cgroup v1 limit", "", "", map[string]string{"memory/memory.limit_in_bytes": "2147483648"},
			Policy{400, "default", share(2 * gib), "cgroup"}},
		{"cgroup v1 without limit", "", "", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712"},
			Policy{400, "default", math.MaxInt64, "none"}},
		{"GOGC wins", "150", "", nil, Policy{-2, "GOGC", math.MaxInt64, "none"}},
		{"GOMEMLIMIT wins", "", "512MiB", map[string]string{"memory.max": "1073741824"},
			Policy{400, "default", -2, "GOMEMLIMIT"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			restore(t)
			t.Setenv("GOGC", test.gogc)
			t.Setenv("GOMEMLIMIT", test.gomemlimit)
			// The runtime read GOGC and GOMEMLIMIT at start: stand in for
			// what it would have set from the test's values.
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if test.gogc != "" {
				debug.SetGCPercent(150)
			}
			if test.gomemlimit != "" {
				debug.SetMemoryLimit(512 << 20)
			}
			want := test.want
			if want.Percent == -2 {
				want.Percent = 150
			}
			if want.MemoryLimit == -2 {
				want.MemoryLimit = 512 << 20
			}
			got := Apply(DefaultPercent, cgroup(t, test.files))
			if got != want {
				t.Errorf("Apply = %+v, want %+v", got, want)
			}
			if got.Bounded() != (test.gogc == "") {
				t.Errorf("Bounded = %v with GOGC=%q: only an operator's GOGC turns the headroom bound off", got.Bounded(), test.gogc)
			}
			if p := debug.SetGCPercent(-1); p != want.Percent {
				t.Errorf("collector percent %d, want %d", p, want.Percent)
			}
			if l := debug.SetMemoryLimit(-1); l != want.MemoryLimit {
				t.Errorf("memory limit %d, want %d", l, want.MemoryLimit)
			}
		})
	}
}

func share(limit int64) int64 { return int64(float64(limit) * LimitShare) }

func TestPercentForBoundsTheHeadroom(t *testing.T) {
	const mib = 1 << 20
	for _, test := range []struct {
		percent int
		live    uint64
		want    int
	}{
		{400, 0, 400},         // no cycle yet
		{400, 100 * mib, 400}, // 400 MiB of headroom: within the bound
		{400, 128 * mib, 400}, // exactly the bound
		{400, 256 * mib, 200}, // 512 MiB of headroom
		{400, 1024 * mib, 50}, // 1 GiB live: 1.5 GiB, not 5
		{400, 100 * 1024 * mib, minPercent},
		{100, 512 * mib, 100}, // a lower percent is kept while within
		{100, 2048 * mib, 25},
	} {
		got := percentFor(test.percent, test.live)
		if got != test.want {
			t.Errorf("percentFor(%d, %d MiB) = %d, want %d", test.percent, test.live/mib, got, test.want)
		}
		if test.live > 0 && got > minPercent && test.live*uint64(got)/100 > MaxHeadroom {
			t.Errorf("percentFor(%d, %d MiB) = %d: headroom %d MiB over the bound", test.percent, test.live/mib, got, test.live*uint64(got)/100/mib)
		}
	}
}

// TestBoundLowersThePercent grows a live heap past what MaxHeadroom allows
// at the default percent and checks that Bound lowers the percent, and
// restores it once the heap is freed.
func TestBoundLowersThePercent(t *testing.T) {
	restore(t)
	t.Setenv("GOGC", "")
	p := Apply(DefaultPercent, t.TempDir())
	defer p.StartBound(context.Background(), 10*time.Millisecond)()
	percent := func() int { v := debug.SetGCPercent(-1); debug.SetGCPercent(v); return v }
	waitFor := func(what string, ok func(int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(percent()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: percent %d", what, percent())
			}
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
		}
	}
	live := make([]byte, 300<<20) // pointer-free: cheap to hold
	live[len(live)-1] = 1
	waitFor("300 MiB live", func(v int) bool { return v < DefaultPercent && v >= minPercent })
	runtime.KeepAlive(live)
	live = nil
	waitFor("heap freed", func(v int) bool { return v == DefaultPercent })
}
