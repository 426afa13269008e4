package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a contender's process tree: started in a process group of its
// own, killed with the harness, its peak resident memory sampled over the
// whole tree (a JVM and its Python workers count together).
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	lines   chan string // stdout lines, if watched
	done    chan struct{}
	waitErr error
	sampler *rssSampler
}

// start runs cmd with its output appended to dir/name.log; stdout lines
// are also delivered on p.lines when watch is set.
func start(dir, name string, cmd *exec.Cmd, watch bool) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	cmd.Stderr = logf
	var stdout io.ReadCloser
	if watch {
		p.lines = make(chan string, 1024)
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.sampler = sampleRSS(cmd.Process.Pid)
	var wg sync.WaitGroup
	if watch {
		wg.Go(func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logf, line)
				select {
				case p.lines <- line:
				default:
				}
			}
			close(p.lines)
		})
	}
	go func() {
		wg.Wait()
		p.waitErr = cmd.Wait()
		p.sampler.stop()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// waitFor reads stdout lines until one starts with prefix, the process
// exits, or timeout passes.
func (p *proc) waitFor(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				return "", fmt.Errorf("%s exited before %q: %v (see %s)", p.name, prefix, p.waitErr, p.log.Name())
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-t.C:
			return "", fmt.Errorf("%s: no %q after %v (see %s)", p.name, prefix, timeout, p.log.Name())
		}
	}
}

// wait waits for the process to exit, killing it after timeout.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		<-p.done
		return fmt.Errorf("%s: killed after %v (see %s)", p.name, timeout, p.log.Name())
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: %w (see %s)", p.name, p.waitErr, p.log.Name())
	}
	return nil
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) { _ = syscall.Kill(p.cmd.Process.Pid, sig) }

// kill kills the whole process group.
func (p *proc) kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// peakRSS is the highest resident memory of the tree seen, in bytes: the
// larger of the sampled sum over the tree and the root's own high-water
// mark (VmHWM, which a 50 ms sample cannot miss). Not rusage's maxrss: a
// child exec'd from this process starts from this process's high-water mark.
func (p *proc) peakRSS() int64 {
	return p.sampler.peak()
}

// rssSampler samples the summed RSS of a process and its descendants
// every 50 ms, and the CPU time of each of them.
type rssSampler struct {
	mu   sync.Mutex
	max  int64
	cpu  map[int]float64 // by pid, the last CPU seconds seen
	quit chan struct{}
	done chan struct{}
}

func sampleRSS(root int) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{}), cpu: map[int]float64{}}
	page := int64(os.Getpagesize())
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			rss, pids := treeRSS(root, page)
			hwm := highWaterRSS(root)
			s.mu.Lock()
			s.max = max(s.max, rss, hwm)
			for _, pid := range pids {
				if c := processCPU(pid); c > s.cpu[pid] {
					s.cpu[pid] = c
				}
			}
			s.mu.Unlock()
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
}

func (s *rssSampler) peak() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// treeCPU is the CPU seconds of the tree's processes, as last sampled.
func (s *rssSampler) treeCPU() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for _, c := range s.cpu {
		sum += c
	}
	return sum
}

// treeRSS sums the resident memory of root and all its descendants, and
// returns their pids.
func treeRSS(root int, page int64) (int64, []int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var total int64
	var pids []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		queue = append(queue, children[pid]...)
		statm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
		if err != nil {
			continue
		}
		pids = append(pids, pid)
		f := strings.Fields(string(statm))
		if len(f) > 1 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n * page
		}
	}
	return total, pids
}

// cpuSeconds is the CPU time (user + system) of the process tree: the
// larger of the root's rusage (with the descendants it waited for) and the
// sum over the tree's processes sampled every 50 ms (which counts a JVM
// that its Python parent never waited for).
func (p *proc) cpuSeconds() float64 {
	c := p.sampler.treeCPU()
	if p.cmd.ProcessState != nil {
		c = max(c, (p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()).Seconds())
	}
	return c
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// processCPU returns the CPU seconds pid used so far.
func processCPU(pid int) float64 {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// After the comm: state(0) ppid(1) … utime(11) stime(12).
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

// findProcess returns the pid of a process whose command line contains s.
func findProcess(s string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), s) {
			return pid
		}
	}
	return 0
}

// highWaterRSS is VmHWM of pid: the peak resident memory of its current
// program, in bytes.
func highWaterRSS(pid int) int64 {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
