package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/microbatch"
)

// kgoLogger adapts zerolog to franz-go's logger; franz-go's info is chatty,
// so only its warnings and errors pass. franz-go logs key-value pairs:
// errors go under zerolog's "error" key as their message (an error value
// would be encoded as a struct of its fields), durations with a unit.
type kgoLogger struct{ log zerolog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	ev := l.log.Warn()
	if level == kgo.LogLevelError {
		ev = l.log.Error()
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		if key == "err" {
			key = zerolog.ErrorFieldName
		}
		switch v := keyvals[i+1].(type) {
		case nil:
		case error:
			ev = ev.Str(key, v.Error())
		case time.Duration:
			ev = ev.Str(key, v.String())
		case fmt.Stringer:
			ev = ev.Str(key, v.String())
		default:
			ev = ev.Interface(key, v)
		}
	}
	ev.Msg(msg)
}

// redisLogger adapts zerolog to go-redis's logger (redis.SetLogger). go-redis
// logs only what goes wrong, as printf lines such as "redis: connection
// pool: failed to dial …", several a second while Redis is down: they go
// out as warnings, at most a few every 10 s.
type redisLogger struct{ log zerolog.Logger }

func newRedisLogger(log zerolog.Logger) redisLogger {
	return redisLogger{log.With().Str("component", "redis").Logger().
		Sample(&zerolog.BurstSampler{Burst: 3, Period: 10 * time.Second})}
}

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.log.Warn().Msg(strings.TrimPrefix(msg, "redis: "))
}

// batchLog writes an info line per committed batch, or, when batches come
// faster than one a second, one line a second summing them up: operators
// follow a job by its log, which must not drown in it.
type batchLog struct {
	log   zerolog.Logger
	every time.Duration // one line per this much wall time at most
	now   func() time.Time

	pending batchSummary // the batches since the last line
}

// batchSummary sums up the batches of one line.
type batchSummary struct {
	first, last          uint64
	batches, records     int
	output, stateChanges int
	maxDelay, maxProc    time.Duration
	since                time.Time // wall time of the last line
}

func newBatchLog(log zerolog.Logger) *batchLog {
	return &batchLog{log: log.With().Str("component", "dstream").Logger(), every: time.Second, now: time.Now}
}

// observe is a microbatch listener: it runs on the job's goroutine.
func (l *batchLog) observe(b microbatch.BatchStats) {
	p := &l.pending
	now := l.now()
	if p.batches == 0 && now.Sub(p.since) >= l.every {
		l.log.Info().Uint64("batch", b.ID).Time("batch_time", b.Time).Int("records", b.Records).
			Float64("scheduling_delay_ms", durMillis(b.SchedulingDelay)).Float64("processing_ms", durMillis(b.ProcessingTime)).
			Float64("checkpoint_ms", durMillis(b.CheckpointTime)).Int("output_records", b.Messages).
			Int("state_changes", b.StateChanges).Msg("batch committed")
		p.since = now
		return
	}
	if p.batches == 0 {
		p.first = b.ID
	}
	p.last, p.batches = b.ID, p.batches+1
	p.records, p.output, p.stateChanges = p.records+b.Records, p.output+b.Messages, p.stateChanges+b.StateChanges
	p.maxDelay, p.maxProc = max(p.maxDelay, b.SchedulingDelay), max(p.maxProc, b.ProcessingTime)
	if now.Sub(p.since) < l.every {
		return
	}
	l.log.Info().Uint64("first_batch", p.first).Uint64("last_batch", p.last).Int("batches", p.batches).
		Int("records", p.records).Float64("max_scheduling_delay_ms", durMillis(p.maxDelay)).
		Float64("max_processing_ms", durMillis(p.maxProc)).Int("output_records", p.output).
		Int("state_changes", p.stateChanges).Msg("batches committed")
	l.pending = batchSummary{since: now}
}
