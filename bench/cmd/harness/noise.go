package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The machine is shared: other engineers' tests run beside the benchmark.
// noise measures how much: over every stage, the CPU the whole machine was
// busy (/proc/stat) minus the CPU of the harness's own process tree (itself,
// the broker, Redis, the contenders), in cores, and the load average.

// cpuSnapshot is the machine's and the harness tree's CPU so far.
type cpuSnapshot struct {
	at      time.Time
	machine float64 // busy CPU seconds of all cores since boot
	ours    float64 // CPU seconds of this process tree
	load    float64 // 1-minute load average
}

func snapshotCPU() cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), machine: machineBusy(), ours: ownTreeCPU()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			s.load, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return s
}

// machineBusy is the non-idle time of all CPUs, from /proc/stat's cpu line
// (user nice system idle iowait irq softirq steal …), in seconds.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks
}

// ownTreeCPU is the CPU of this process, of its children it reaped, and of
// its descendants still running.
func ownTreeCPU() float64 {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	sec := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	total := sec(self.Utime) + sec(self.Stime) + sec(children.Utime) + sec(children.Stime)
	_, pids := treeRSS(os.Getpid(), int64(os.Getpagesize()))
	for _, pid := range pids {
		if pid != os.Getpid() {
			total += processCPU(pid)
		}
	}
	return total
}

// noise samples the load while a stage runs.
type noise struct {
	mu      sync.Mutex
	samples []cpuSnapshot
	quit    chan struct{}
	done    chan struct{}
}

func watchNoise(every time.Duration) *noise {
	n := &noise{quit: make(chan struct{}), done: make(chan struct{})}
	n.samples = append(n.samples, snapshotCPU())
	go func() {
		defer close(n.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-n.quit:
				s := snapshotCPU()
				n.mu.Lock()
				n.samples = append(n.samples, s)
				n.mu.Unlock()
				return
			case <-t.C:
				s := snapshotCPU()
				n.mu.Lock()
				n.samples = append(n.samples, s)
				n.mu.Unlock()
			}
		}
	}()
	return n
}

// stageNoise is what a stage saw of the others.
type stageNoise struct {
	stage            string
	seconds          float64
	foreign, ours    float64 // cores, on average
	loadMean, loadHi float64
}

func (n *noise) stop(stage string) stageNoise {
	close(n.quit)
	<-n.done
	n.mu.Lock()
	defer n.mu.Unlock()
	first, last := n.samples[0], n.samples[len(n.samples)-1]
	out := stageNoise{stage: stage, seconds: last.at.Sub(first.at).Seconds()}
	if out.seconds > 0 {
		out.ours = (last.ours - first.ours) / out.seconds
		out.foreign = max(0, (last.machine-first.machine)-(last.ours-first.ours)) / out.seconds
	}
	for _, s := range n.samples {
		out.loadMean += s.load / float64(len(n.samples))
		out.loadHi = max(out.loadHi, s.load)
	}
	return out
}

// noiseTable renders the stages' noise.
func (b *bench) noiseTable() string {
	if len(b.noise) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("| stage | seconds | other processes' CPU (cores of 2) | the harness's CPU (cores) | load average, mean | load average, max |\n|---|---:|---:|---:|---:|---:|\n")
	var secs, foreign float64
	for _, s := range b.noise {
		fmt.Fprintf(&sb, "| %s | %.0f | %.2f | %.2f | %.1f | %.1f |\n", s.stage, s.seconds, s.foreign, s.ours, s.loadMean, s.loadHi)
		secs += s.seconds
		foreign += s.foreign * s.seconds
	}
	if secs > 0 {
		fmt.Fprintf(&sb, "| **whole run** | %.0f | %.2f | | | |\n", secs, foreign/secs)
	}
	return sb.String()
}
