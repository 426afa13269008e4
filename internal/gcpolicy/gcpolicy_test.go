package gcpolicy

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
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
