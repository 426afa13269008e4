// Package cputime measures the CPU time that the process has used, for
// benchmarks that report it beside wall time, which other load on the machine
// distorts. It counts user and system time over all threads; where it cannot
// be measured (outside unix), it is 0.
package cputime
