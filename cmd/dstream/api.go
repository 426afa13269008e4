package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
)

// statusSchema names the layout of /api/status. A change that removes or
// renames a field, or changes its meaning, is a new version; adding a field
// is not. docs/api.md documents it and docs/status.schema.json describes it.
const statusSchema = "dstream.status/v1"

// The body of /api/status, modelled on Structured Streaming's
// StreamingQueryProgress: snake_case names, durations in milliseconds,
// times in RFC 3339 (UTC), rates in records per second.
type (
	apiStatusV1 struct {
		Schema      string      `json:"schema"`
		GeneratedAt time.Time   `json:"generated_at"`
		Build       apiBuild    `json:"build"`
		Instance    apiInstance `json:"instance"`
		Job         apiJob      `json:"job"`
		Batches     []apiBatch  `json:"batches"`
		Results     *apiResults `json:"results"`
	}
	apiBuild struct {
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		GoVersion string `json:"go_version"`
	}
	apiInstance struct {
		Role          role      `json:"role"`
		Ready         bool      `json:"ready"`
		ReadyReason   string    `json:"ready_reason"`
		RefusedReason *string   `json:"refused_reason"`
		Demo          bool      `json:"demo"`
		StartedAt     time.Time `json:"started_at"`
		UptimeMs      int64     `json:"uptime_ms"`
		BatchesRun    uint64    `json:"batches_run"`
		Fenced        int       `json:"fenced"`
	}
	apiJob struct {
		ID                 string         `json:"id"`
		InputTopic         string         `json:"input_topic"`
		OutputTopic        string         `json:"output_topic"`
		DeadLetterTopic    *string        `json:"deadletter_topic"`
		BatchIntervalMs    float64        `json:"batch_interval_ms"`
		WindowMs           float64        `json:"window_ms"`
		SlideMs            float64        `json:"slide_ms"`
		TopN               int            `json:"top_n"`
		CommittedBatch     uint64         `json:"committed_batch"`
		CommittedBatchTime *time.Time     `json:"committed_batch_time"`
		LastCommitAt       *time.Time     `json:"last_commit_at"`
		BackpressureRate   float64        `json:"backpressure_rate"`
		Lag                []apiLag       `json:"lag"`
		LagTotal           int64          `json:"lag_total"`
		State              []apiStateSize `json:"state"`
		Shards             int            `json:"shards"`
		Tasks              []apiTask      `json:"tasks"`
	}
	apiLag struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Position  int64  `json:"position"`
		End       int64  `json:"end"`
		Lag       int64  `json:"lag"`
	}
	apiStateSize struct {
		Operator string `json:"operator"`
		Rows     int64  `json:"rows"`
		Bytes    int64  `json:"bytes"`
	}
	apiBatch struct {
		ID                uint64      `json:"id"`
		BatchTime         time.Time   `json:"batch_time"`
		Records           int         `json:"records"`
		Offsets           []apiOffset `json:"offsets"`
		InputRate         float64     `json:"input_rate"`
		ProcessedRate     float64     `json:"processed_rate"`
		SchedulingDelayMs float64     `json:"scheduling_delay_ms"`
		ProcessingTimeMs  float64     `json:"processing_time_ms"`
		CheckpointTimeMs  float64     `json:"checkpoint_time_ms"`
		TotalDelayMs      float64     `json:"total_delay_ms"`
		OutputRecords     int         `json:"output_records"`
		StateChanges      int         `json:"state_changes"`
		LagAtPlan         *int64      `json:"lag_at_plan"`
		CommittedAt       *time.Time  `json:"committed_at"`
	}
	apiOffset struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Start     int64  `json:"start"`
		End       int64  `json:"end"`
	}
	// apiTask is one of the job's tasks: the whole job if unsharded, or a
	// stage's task of a sharded one (docs/scale-out.md).
	apiTask struct {
		Name           string  `json:"name"`
		Stage          int     `json:"stage"`
		Index          int     `json:"index"`
		Replica        *string `json:"replica"`
		Here           bool    `json:"here"`
		CommittedBatch uint64  `json:"committed_batch"`
		Lag            *int64  `json:"lag"`
	}
	apiResults struct {
		BatchTime time.Time       `json:"batch_time"`
		Top       []topips.Result `json:"top"`
	}
)

// apiLagTimeout bounds the end-offset lookup of one /api/status.
const apiLagTimeout = 2 * time.Second

func apiHandler(s *status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), apiLagTimeout)
		defer cancel()
		body := s.api(ctx, time.Now())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(body)
	})
}

// api renders the status as /api/status serves it.
func (s *status) api(ctx context.Context, now time.Time) apiStatusV1 {
	snap := s.snapshot()
	out := apiStatusV1{
		Schema:      statusSchema,
		GeneratedAt: now.UTC(),
		Build:       apiBuild{Version: s.build.Version, Revision: s.build.Revision, GoVersion: s.build.GoVersion},
		Instance: apiInstance{
			Role: snap.Role, Ready: snap.Ready, ReadyReason: snap.ReadyWhy, Demo: s.demo,
			StartedAt: s.started.UTC(), UptimeMs: now.Sub(s.started).Milliseconds(),
			BatchesRun: snap.Ran, Fenced: snap.Fenced,
		},
		Job: apiJob{
			ID: s.cfg.JobID, InputTopic: s.cfg.InputTopic, OutputTopic: s.cfg.OutputTopic,
			BatchIntervalMs: durMillis(s.cfg.BatchInterval), WindowMs: durMillis(s.cfg.Window), SlideMs: durMillis(s.cfg.Slide),
			TopN: s.cfg.TopN, CommittedBatch: snap.Committed.ID,
			Lag: []apiLag{}, State: []apiStateSize{}, Shards: max(1, s.cfg.Shards), Tasks: []apiTask{},
		},
		Batches: make([]apiBatch, 0, len(snap.Batches)),
	}
	if snap.Refused != "" {
		out.Instance.RefusedReason = &snap.Refused
	}
	if s.cfg.DeadLetterTopic != "" {
		out.Job.DeadLetterTopic = &s.cfg.DeadLetterTopic
	}
	if c := snap.Committed; c.ID > 0 {
		if !c.Time.IsZero() {
			t := c.Time.UTC()
			out.Job.CommittedBatchTime = &t
		}
		if !c.CommittedAt.IsZero() {
			t := c.CommittedAt.UTC()
			out.Job.LastCommitAt = &t
		}
	}
	if s.live.rate != nil {
		out.Job.BackpressureRate = s.live.rate()
	}
	if s.live.lag != nil {
		for _, l := range s.live.lag(ctx, snap.Committed.Ranges) {
			out.Job.Lag = append(out.Job.Lag, apiLag(l))
			out.Job.LagTotal += l.Lag
		}
	}
	if s.live.tasks != nil {
		out.Job.Tasks = append(out.Job.Tasks, s.live.tasks(ctx)...)
	}
	if s.live.state != nil {
		for _, st := range s.live.state() {
			out.Job.State = append(out.Job.State, apiStateSize{Operator: st.Operator, Rows: int64(st.Keys), Bytes: st.Bytes})
		}
	}
	for i, b := range snap.Batches {
		since := s.cfg.BatchInterval
		if i > 0 && b.Time.After(snap.Batches[i-1].Time) {
			since = b.Time.Sub(snap.Batches[i-1].Time)
		}
		out.Batches = append(out.Batches, apiBatchOf(b, since))
	}
	if len(snap.Results) > 0 {
		out.Results = &apiResults{BatchTime: snap.ResultsTime.UTC(), Top: snap.Results}
	}
	return out
}

// apiBatchOf renders a batch; since is the time since the batch before it.
// Its rates are Structured Streaming's: the input rate is the batch's
// records over the time since the batch before (inputRowsPerSecond), the
// processed rate its records over its processing time
// (processedRowsPerSecond).
func apiBatchOf(b batch, since time.Duration) apiBatch {
	a := apiBatch{
		ID: b.ID, BatchTime: b.Time.UTC(), Records: b.Records, Offsets: make([]apiOffset, 0, len(b.Ranges)),
		InputRate:         rate(b.Records, since),
		ProcessedRate:     rate(b.Records, b.ProcessingTime),
		SchedulingDelayMs: durMillis(b.SchedulingDelay),
		ProcessingTimeMs:  durMillis(b.ProcessingTime),
		CheckpointTimeMs:  durMillis(b.CheckpointTime),
		TotalDelayMs:      durMillis(b.SchedulingDelay + b.ProcessingTime),
		OutputRecords:     b.Messages,
		StateChanges:      b.StateChanges,
	}
	for _, r := range b.Ranges {
		a.Offsets = append(a.Offsets, apiOffset{Topic: r.Topic, Partition: r.Partition, Start: r.From, End: r.Until})
	}
	if b.Lag >= 0 {
		lag := b.Lag
		a.LagAtPlan = &lag
	}
	if !b.CommittedAt.IsZero() {
		t := b.CommittedAt.UTC()
		a.CommittedAt = &t
	}
	return a
}

// rate is records per second over d (0 for no time).
func rate(records int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(records) / d.Seconds()
}

// rangesLag turns the ranges of the last committed batch into positions,
// for a standby's lag: it plans nothing, the job is where the checkpoint is.
func rangesLag(rs []microbatch.Range) []position {
	out := make([]position, len(rs))
	for i, r := range rs {
		out[i] = position{Partition: r.Partition, Until: r.Until}
	}
	return out
}
