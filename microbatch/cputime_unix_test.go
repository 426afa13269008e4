//go:build unix

package microbatch_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system, all threads) the process
// used so far: benchmarks report it next to wall time, which other load on
// the machine distorts.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
