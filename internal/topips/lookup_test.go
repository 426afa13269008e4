package topips

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
)

// batchSource serves batch i of its lines as the offsets [i, i+1) of one
// partition: a replayable in-memory Source for unit tests.
type batchSource struct{ batches [][]string }

func (s batchSource) Topic() string { return "logs" }

func (s batchSource) Cut(_ context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	next := int64(0)
	if len(after) > 0 {
		next = after[0].Until
	}
	return []microbatch.Range{{Topic: "logs", From: next, Until: min(next+1, int64(len(s.batches)))}}, nil
}

func (s batchSource) Read(_ context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	for _, r := range ranges {
		for i := r.From; i < r.Until; i++ {
			for n, line := range s.batches[i] {
				emit(microbatch.Record{Offset: i*1000 + int64(n), Value: []byte(line)})
			}
		}
	}
	return nil
}

type nopSink struct{}

func (nopSink) WriteBatch(context.Context, microbatch.BatchInfo, []microbatch.Message) error {
	return nil
}

func line(ip string) string {
	return "2016-12-06T08:58:35.318+0000 " + ip + " 200 GET /a 0.026"
}

// TestLookupAnswersFromTheState runs the job over known batches, looking IPs
// up while it runs (for the race detector), and checks the answers against
// counts made here: totals over every slide, the count in the last window,
// the country.
func TestLookupAnswersFromTheState(t *testing.T) {
	ips := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	var batches [][]string
	for b := range 6 {
		var lines []string
		for i, ip := range ips {
			for range (b + 1) * (i + 1) { // batch b holds (b+1)(i+1) lines of ip i
				lines = append(lines, line(ip))
			}
		}
		batches = append(batches, lines)
	}
	countries := rdd.NewTable([]microbatch.Pair[string, string]{microbatch.KV("10.0.0.2", "PT")})
	j := microbatch.NewJob(10*time.Second, microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
		microbatch.WithBatchLimit(uint64(len(batches))))
	j.Checkpoint(microbatch.NewMemoryStore())
	p := Build(j, batchSource{batches}, nopSink{}, Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3, Countries: countries})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				p.Lookup("10.0.0.1")
			}
		}
	})
	err := j.Run(context.Background())
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	for i, ip := range ips {
		var total, window int64
		for b := range batches {
			n := int64((b + 1) * (i + 1))
			total += n
			if b >= len(batches)-3 {
				window += n
			}
		}
		country := Unknown
		if ip == "10.0.0.2" {
			country = "PT"
		}
		want := Entry{IP: ip, Total: total, WindowCount: window, Country: country, Batch: uint64(len(batches))}
		if got, ok := p.Lookup(ip); !ok || got != want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", ip, got, ok, want)
		}
	}
	for _, ip := range []string{"10.9.9.9", "not-an-ip", strings.Repeat("1", 40)} {
		if got, ok := p.Lookup(ip); ok {
			t.Errorf("Lookup(%s) = %+v, want no state", ip, got)
		}
	}
}

// ExamplePipeline_Lookup looks an IP up in a running job's state.
func ExamplePipeline_Lookup() {
	j := microbatch.NewJob(10*time.Second, microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
		microbatch.WithBatchLimit(2))
	j.Checkpoint(microbatch.NewMemoryStore())
	p := Build(j, batchSource{[][]string{{line("10.0.0.1"), line("10.0.0.1")}, {line("10.0.0.1")}}}, nopSink{},
		Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3})
	if err := j.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	e, _ := p.Lookup("10.0.0.1")
	fmt.Printf("%s: total %d, window %d, %s\n", e.IP, e.Total, e.WindowCount, e.Country)
	// Output: 10.0.0.1: total 3, window 3, unknown
}
