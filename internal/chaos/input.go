package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/weblog"
)

// Feed configures the writer of input lines.
type Feed struct {
	Topic string
	// Lines is how many lines to write.
	Lines int64
	// Rate is lines per second (0: as fast as the broker takes them).
	Rate int
	// Seed and IPs configure weblog's generator: the same seed writes the
	// same lines.
	Seed uint64
	IPs  int
	// MalformedEvery makes every n-th line malformed (0: none), cycling
	// through the kinds of bad line the job sends to dead letters.
	MalformedEvery int64
}

// malformed are lines weblog.Parse rejects.
var malformed = []string{
	"",
	"garbage",
	"2016-12-06T08:58:35.318+0000 999.1.1.1 200 GET /codemove/X 0.1",
	"2016-12-06T08:58:35.318+0000 1.2.3.4 200 GET /\xff 0.1",
	"2016-12-06T08:58:35.318+0000 1.2.3.4 20 GET /codemove/X 0.1",
}

// Write produces the lines with an idempotent producer, which rides out
// broker restarts; sent counts the lines handed to the client so far. It
// returns once every line is acknowledged, or on the first produce error.
// Canceling ctx stops it early: what was handed to the client is still
// delivered, and Write returns ctx's error.
func (f Feed) Write(ctx context.Context, opts []kgo.Opt, sent *atomic.Int64) error {
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(f.Topic), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("chaos: feed client: %w", err)
	}
	defer cl.Close()
	gen := weblog.NewGenerator(f.Seed, f.IPs)
	var failed atomic.Pointer[error]
	start := time.Now()
	step := int64(max(1, f.Rate/100))
	for n := int64(0); n < f.Lines; n++ {
		if f.Rate > 0 && n%step == 0 {
			due := start.Add(time.Duration(float64(n) / float64(f.Rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return errors.Join(ctx.Err(), flush(cl, &failed))
				case <-t.C:
				}
			}
		}
		if e := failed.Load(); e != nil {
			return fmt.Errorf("chaos: feed %s: %w", f.Topic, *e)
		}
		var value []byte
		if f.MalformedEvery > 0 && n%f.MalformedEvery == f.MalformedEvery-1 {
			value = []byte(malformed[(n/f.MalformedEvery)%int64(len(malformed))])
		} else {
			value = gen.Append(nil)
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), flush(cl, &failed))
		}
		cl.Produce(context.WithoutCancel(ctx), &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
		sent.Add(1)
	}
	if err := flush(cl, &failed); err != nil {
		return fmt.Errorf("chaos: feed %s: %w", f.Topic, err)
	}
	return nil
}

// flush waits (at most two minutes: a broker restart takes seconds) until
// every line handed to cl is acknowledged.
func flush(cl *kgo.Client, failed *atomic.Pointer[error]) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if e := failed.Load(); e != nil {
		return *e
	}
	return nil
}

// Countries gives a country to n of the IPs that the feed's generator
// writes first, and writes them as the job's countries CSV to path.
func (f Feed) Countries(path string, n int) (map[string]string, error) {
	gen := weblog.NewGenerator(f.Seed, f.IPs)
	out := map[string]string{}
	for i := 0; i < 100*n && len(out) < n; i++ {
		e, err := weblog.Parse(gen.Line())
		if err != nil {
			continue
		}
		if _, ok := out[e.IP]; !ok {
			out[e.IP] = fmt.Sprintf("C%d", len(out)+1)
		}
	}
	ips := make([]string, 0, len(out))
	for ip := range out {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	var sb strings.Builder
	sb.WriteString("ip,country\n")
	for _, ip := range ips {
		fmt.Fprintf(&sb, "%s,%s\n", ip, out[ip])
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	return out, nil
}
