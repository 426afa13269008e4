package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/microbatch"
)

func TestKafkaLogger(t *testing.T) {
	var buf syncBuffer
	l := kgoLogger{zerolog.New(&buf)}
	l.Log(kgo.LogLevelError, "unable to initialize a producer id", "err", fmt.Errorf("wrapped: %w", kerr.ProducerFenced),
		"backoff", 250*time.Millisecond, "broker", kgo.NodeName(1), "attempts", 3)
	l.Log(kgo.LogLevelWarn, "metadata update", "why", "x", "err", error(nil))
	lines := logLines(buf.String())
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for key, want := range map[string]any{
		"level": "error", "message": "unable to initialize a producer id", "backoff": "250ms", "broker": "1", "attempts": 3.0,
	} {
		if got := lines[0][key]; got != want {
			t.Errorf("%s = %#v, want %#v", key, got, want)
		}
	}
	if got, ok := lines[0]["error"].(string); !ok || !strings.Contains(got, "wrapped: PRODUCER_FENCED") {
		t.Errorf("error = %#v, want franz-go's error as a string under zerolog's key", lines[0]["error"])
	}
	if _, ok := lines[0]["err"]; ok {
		t.Errorf("the error is logged under err too")
	}
	if _, ok := lines[1]["error"]; lines[1]["level"] != "warn" || ok || lines[1]["err"] != nil {
		t.Errorf("a nil error is logged: %v", lines[1])
	}
}

// TestRedisLogger: go-redis's printf lines come out as JSON warnings, a few
// per 10 s at most.
func TestRedisLogger(t *testing.T) {
	var buf syncBuffer
	l := newRedisLogger(zerolog.New(&buf))
	for i := range 20 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: dial tcp 127.0.0.1:6379: connect: connection refused\n", i)
	}
	lines := logLines(buf.String())
	if n := strings.Count(buf.String(), "\n"); n != len(lines) {
		t.Fatalf("%d of %d lines are JSON:\n%s", len(lines), n, buf.String())
	}
	if len(lines) != 3 {
		t.Errorf("%d lines for 20 messages in a burst, want 3", len(lines))
	}
	want := map[string]any{"level": "warn", "component": "redis",
		"message": "connection pool: failed to dial after 0 attempts: dial tcp 127.0.0.1:6379: connect: connection refused"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %#v, want %#v", k, lines[0][k], v)
		}
	}
}

// TestBatchLog: an info line per batch when batches come a second or more
// apart; faster, one line a second summing them up.
func TestBatchLog(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 5, 31, 0, 0, time.UTC)
	for _, test := range []struct {
		name     string
		interval time.Duration
		batches  int
		want     []string // the lines' messages
		check    func(t *testing.T, lines []map[string]any)
	}{
		{name: "slow batches", interval: 10 * time.Second, batches: 3,
			want: []string{"batch committed", "batch committed", "batch committed"},
			check: func(t *testing.T, lines []map[string]any) {
				for key, want := range map[string]any{"batch": 3.0, "records": 300.0, "scheduling_delay_ms": 1.5,
					"processing_ms": 40.0, "checkpoint_ms": 2.25, "output_records": 3.0, "state_changes": 30.0, "level": "info"} {
					if got := lines[2][key]; got != want {
						t.Errorf("%s = %#v, want %#v", key, got, want)
					}
				}
			}},
		{name: "fast batches", interval: 100 * time.Millisecond, batches: 25,
			want: []string{"batch committed", "batches committed", "batches committed"},
			check: func(t *testing.T, lines []map[string]any) {
				// 1 alone, then 2–11 and 12–21 (22–25 wait for the next second).
				for key, want := range map[string]any{"first_batch": 2.0, "last_batch": 11.0, "batches": 10.0,
					"records": 6500.0, "max_processing_ms": 40.0, "max_scheduling_delay_ms": 5.5} {
					if got := lines[1][key]; got != want {
						t.Errorf("%s = %#v, want %#v", key, got, want)
					}
				}
				if lines[2]["first_batch"] != 12.0 || lines[2]["last_batch"] != 21.0 {
					t.Errorf("second summary: %v", lines[2])
				}
			}},
	} {
		t.Run(test.name, func(t *testing.T) {
			var buf syncBuffer
			l := newBatchLog(zerolog.New(&buf))
			now := t0
			l.now = func() time.Time { return now }
			for i := 1; i <= test.batches; i++ {
				now = t0.Add(time.Duration(i) * test.interval)
				l.observe(microbatch.BatchStats{ID: uint64(i), Time: now, Records: 100 * i,
					SchedulingDelay: time.Duration(i) * 500 * time.Microsecond, ProcessingTime: 40 * time.Millisecond,
					CheckpointTime: 2250 * time.Microsecond, Messages: 3, StateChanges: 10 * i})
			}
			lines := logLines(buf.String())
			var got []string
			for _, l := range lines {
				got = append(got, fmt.Sprint(l["message"]))
			}
			if strings.Join(got, ",") != strings.Join(test.want, ",") {
				t.Fatalf("lines %q, want %q", got, test.want)
			}
			test.check(t, lines)
		})
	}
}
