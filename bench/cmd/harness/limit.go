package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/gcpolicy"
)

// childReport is what a Go contender's process reports to the harness.
type childReport struct {
	Lines   int64   `json:"lines"`
	Seconds float64 `json:"seconds"`
	// HeapInuse is the Go heap in use after a final GC, with the job's
	// state still reachable.
	HeapInuse uint64 `json:"heap_inuse"`
	Batches   int    `json:"batches"`
	// Commits counts the commits the batches took (dstream): fewer than
	// Batches when batches waited for a commit and committed together.
	Commits int `json:"commits,omitempty"`
	// Per-batch processing and checkpoint times (dstream).
	ProcessingMS []float64 `json:"processing_ms,omitempty"`
	CheckpointMS []float64 `json:"checkpoint_ms,omitempty"`
	SchedulingMS []float64 `json:"scheduling_ms,omitempty"`
	// Timings: wall time in Source, Store and Sink calls (dstream), as
	// text and by call.
	Timings string              `json:"timings,omitempty"`
	Calls   map[string]callStat `json:"calls,omitempty"`
	// PeakRSS is the process's resident high-water mark at the end of the
	// run, before the harness's checks read anything back (dstream).
	PeakRSS int64 `json:"peak_rss,omitempty"`
	// UserSeconds and SysSeconds are the CPU time the process spent during
	// the run, in itself and in the kernel (page faults: the first touch
	// of each 4 KiB of new memory), MinorFaults its page faults (dstream).
	UserSeconds float64 `json:"user_seconds,omitempty"`
	SysSeconds  float64 `json:"sys_seconds,omitempty"`
	MinorFaults int64   `json:"minor_faults,omitempty"`
	// StateKeys is the keys of every stateful operator at the end.
	StateKeys []int `json:"state_keys,omitempty"`
	// StartUnixNano is when the process began, FirstCommitUnixNano when
	// its first batch committed (dstream).
	StartUnixNano       int64 `json:"start_unix_nano,omitempty"`
	FirstCommitUnixNano int64 `json:"first_commit_unix_nano,omitempty"`
	// Checked tells that the child checked its answer itself (the totals
	// of a cyclingLines topic): Correct and Detail say how it went.
	Checked bool   `json:"checked,omitempty"`
	Correct bool   `json:"correct,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Bytes of record batches fetched, and what was wrong with them (the
	// raw fetch limit).
	Bytes   int64  `json:"bytes,omitempty"`
	Problem string `json:"problem,omitempty"`
}

func writeReport(path string, r childReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readReport(path string) (childReport, error) {
	var r childReport
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// childLimit is the plain consumer (the "consumer" row; it was the limit
// until dstream outran it, see fetch.go): a plain franz-go consumer that
// reads every line of the topic from the start and counts source IPs in a
// map. Nothing else: no batches, no state store, no output.
func childLimit(args []string) error {
	fs := flag.NewFlagSet("limit", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "")
	topic := fs.String("topic", "", "")
	endsFlag := fs.String("ends", "", "end offset of every partition, comma-separated")
	totalsPath := fs.String("totals", "", "")
	reportPath := fs.String("report", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	gcpolicy.Apply(gcpolicy.DefaultPercent, "/sys/fs/cgroup") // as dstream runs
	remaining := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for p, s := range strings.Split(*endsFlag, ",") {
		end, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		offsets[int32(p)] = kgo.NewOffset().AtStart()
		if end > 0 {
			remaining[int32(p)] = end
		}
	}
	ctx := context.Background()
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{*topic: offsets}),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	counts := make(map[string]int64, 1<<14)
	var lines int64
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return err
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			end := remaining[p.Partition]
			for _, r := range p.Records {
				if r.Offset >= end {
					break
				}
				lines++
				counts[string(ipField(r.Value))]++
				if r.Offset == end-1 {
					delete(remaining, p.Partition)
				}
			}
		})
	}
	elapsed := time.Since(start)
	if err := writeTotals(*totalsPath, counts); err != nil {
		return err
	}
	fmt.Printf("limit: %d lines in %v\n", lines, elapsed)
	return writeReport(*reportPath, childReport{Lines: lines, Seconds: elapsed.Seconds()})
}
