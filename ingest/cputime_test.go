package ingest_test

import "github.com/dstream-io/dstream/internal/cputime"

// cpuTime is the CPU time that the process has used so far: benchmarks report
// it beside wall time.
var cpuTime = cputime.Process
