package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/jsonschema"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// statusSchemaFile is the documented schema of /api/status.
const statusSchemaFile = "../../docs/status.schema.json"

func loadStatusSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile(statusSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAPIStatusSchema validates /api/status of a running processor (the
// demo) against docs/status.schema.json. Standbys and refusing instances
// on a real broker and Redis are validated in internal/chaos.
func TestAPIStatusSchema(t *testing.T) {
	schema := loadStatusSchema(t)
	p := startProcessor(t, configFrom(t, demoEnv(200*time.Millisecond)))
	p.waitBatches(t, 3, 2*time.Minute)
	code, body := p.get(t, "/api/status")
	if code != http.StatusOK {
		t.Fatalf("/api/status: %d", code)
	}
	if err := schema.Validate([]byte(body)); err != nil {
		t.Fatalf("/api/status does not match %s:\n%v\n%s", statusSchemaFile, err, body)
	}
	var s apiStatus
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if s.Schema != statusSchema || s.Instance.Role != roleActive || !s.Instance.Ready || !s.Instance.Demo {
		t.Errorf("schema %q, role %q, ready %v, demo %v: want %s, an active, ready demo", s.Schema, s.Instance.Role, s.Instance.Ready, s.Instance.Demo, statusSchema)
	}
	if len(s.Job.Lag) != 4 || s.Job.CommittedBatch == 0 || s.Job.LastCommitAt == nil {
		t.Errorf("job: lag of %d partitions, committed %d, last commit %v: want 4 partitions and a commit", len(s.Job.Lag), s.Job.CommittedBatch, s.Job.LastCommitAt)
	}
	if len(s.Job.State) != 2 || s.Job.State[0].Rows == 0 || s.Job.State[0].Bytes == 0 {
		t.Errorf("job.state %+v: want the sizes of the two stateful operators", s.Job.State)
	}
	last := s.Batches[len(s.Batches)-1]
	if len(last.Offsets) != 4 || last.InputRate <= 0 || last.ProcessedRate <= 0 || last.CommittedAt == nil || last.LagAtPlan == nil {
		t.Errorf("the last batch lacks offsets, rates, its commit time or its lag: %+v", last)
	}
	records := int64(0)
	for _, o := range last.Offsets {
		records += o.End - o.Start
	}
	if records < int64(last.Records) {
		t.Errorf("batch %d read %d records from offsets spanning %d", last.ID, last.Records, records)
	}
}

// TestAPIStatus renders /api/status in the states a running processor
// rarely shows for long, and checks each against the schema and for the
// values it must carry.
func TestAPIStatus(t *testing.T) {
	schema := loadStatusSchema(t)
	cfg := Config{JobID: "top-ips", InputTopic: "logs", OutputTopic: "top-ips", DeadLetterTopic: "logs-dlq",
		BatchInterval: 10 * time.Second, Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3}
	t0 := time.Date(2026, 11, 24, 5, 31, 0, 0, time.UTC)
	history := []state.BatchRecord{
		{ID: 7, Time: t0, Records: 2000, SchedulingDelay: 1500 * time.Microsecond, ProcessingTime: 400 * time.Millisecond,
			CheckpointTime: 12 * time.Millisecond, OutputRecords: 3, StateChanges: 480, Lag: 10, CommittedAt: t0.Add(402 * time.Millisecond)},
		{ID: 8, Time: t0.Add(10 * time.Second), Records: 3000, ProcessingTime: 250 * time.Millisecond, Lag: -1,
			CommittedAt: t0.Add(10*time.Second + 251*time.Millisecond)},
	}
	plans := []microbatch.Plan{{ID: 8, Time: t0.Add(10 * time.Second), Ranges: []microbatch.Range{
		{Topic: "logs", Partition: 0, From: 100, Until: 1600}, {Topic: "logs", Partition: 1, From: 50, Until: 1550}}}}
	for _, test := range []struct {
		name  string
		setup func(s *status)
		check func(t *testing.T, a apiStatusV1)
	}{
		{"starting", func(*status) {}, func(t *testing.T, a apiStatusV1) {
			if a.Instance.Role != roleStarting || a.Instance.Ready || a.Job.CommittedBatch != 0 || a.Job.CommittedBatchTime != nil ||
				a.Results != nil || len(a.Batches) != 0 {
				t.Errorf("a starting instance: %+v", a)
			}
		}},
		{"standby with the history another instance wrote", func(s *status) {
			s.checked(nil, nil)
			s.setRole(roleStandby)
			s.loadHistory(history, plans, 8)
		}, func(t *testing.T, a apiStatusV1) {
			if a.Instance.Role != roleStandby || !a.Instance.Ready || a.Instance.BatchesRun != 0 {
				t.Errorf("instance %+v: want a ready standby that ran nothing", a.Instance)
			}
			if a.Job.CommittedBatch != 8 || !a.Job.CommittedBatchTime.Equal(t0.Add(10*time.Second)) ||
				!a.Job.LastCommitAt.Equal(t0.Add(10*time.Second+251*time.Millisecond)) {
				t.Errorf("job: committed %d at %v, %v", a.Job.CommittedBatch, a.Job.CommittedBatchTime, a.Job.LastCommitAt)
			}
			if len(a.Batches) != 2 || a.Batches[0].ID != 7 || a.Batches[1].ID != 8 {
				t.Fatalf("batches %+v: want 7 and 8, oldest first", a.Batches)
			}
			b7, b8 := a.Batches[0], a.Batches[1]
			if b7.SchedulingDelayMs != 1.5 || b7.ProcessingTimeMs != 400 || b7.CheckpointTimeMs != 12 || b7.TotalDelayMs != 401.5 ||
				b7.InputRate != 200 || b7.ProcessedRate != 5000 || *b7.LagAtPlan != 10 || len(b7.Offsets) != 0 {
				t.Errorf("batch 7 (trimmed plan): %+v", b7)
			}
			if b8.LagAtPlan != nil || b8.InputRate != 300 || b8.ProcessedRate != 12000 || len(b8.Offsets) != 2 ||
				b8.Offsets[1] != (apiOffset{Topic: "logs", Partition: 1, Start: 50, End: 1550}) {
				t.Errorf("batch 8: %+v", b8)
			}
		}},
		{"history behind the checkpoint", func(s *status) {
			s.checked(nil, nil)
			s.setRole(roleStandby)
			s.loadHistory(history[:1], plans, 8)
		}, func(t *testing.T, a apiStatusV1) {
			if a.Job.CommittedBatch != 8 || !a.Job.CommittedBatchTime.Equal(t0.Add(10*time.Second)) || a.Job.LastCommitAt != nil {
				t.Errorf("job: committed %d at %v, %v: want 8 from its plan, commit time unknown", a.Job.CommittedBatch, a.Job.CommittedBatchTime, a.Job.LastCommitAt)
			}
		}},
		{"refused", func(s *status) {
			s.checked(nil, nil)
			s.refuse("state lost: the checkpoint is at batch 0 but the output already holds batch 7")
			s.setRole(roleActive) // a refusal sticks
		}, func(t *testing.T, a apiStatusV1) {
			if a.Instance.Role != roleRefused || a.Instance.Ready || a.Instance.RefusedReason == nil ||
				!strings.HasPrefix(*a.Instance.RefusedReason, "state lost") || !strings.Contains(a.Instance.ReadyReason, "state lost") {
				t.Errorf("a refusing instance: %+v", a.Instance)
			}
		}},
		{"redis down", func(s *status) {
			s.checked(context.DeadlineExceeded, nil)
			s.setRole(roleActive)
		}, func(t *testing.T, a apiStatusV1) {
			if a.Instance.Ready || !strings.Contains(a.Instance.ReadyReason, "Redis does not answer") {
				t.Errorf("instance %+v: want not ready, Redis named", a.Instance)
			}
		}},
		{"active with results", func(s *status) {
			s.checked(nil, nil)
			s.setRole(roleActive)
			s.planned(plans[0], 0)
			s.observe(microbatch.BatchStats{ID: 8, Time: plans[0].Time, Records: 3000, ProcessingTime: time.Second}, t0.Add(11*time.Second))
			s.results(microbatch.BatchInfo{Plan: plans[0]}, []topips.Result{{BatchTime: plans[0].Time, Rank: 1, IP: "10.0.0.1", Count: 9, Country: "PT", Total: 30}})
		}, func(t *testing.T, a apiStatusV1) {
			if a.Results == nil || len(a.Results.Top) != 1 || a.Results.Top[0].IP != "10.0.0.1" || a.Instance.BatchesRun != 1 {
				t.Errorf("results %+v, batches run %d", a.Results, a.Instance.BatchesRun)
			}
			if len(a.Batches) != 1 || len(a.Batches[0].Offsets) != 2 || *a.Batches[0].LagAtPlan != 0 {
				t.Errorf("batches %+v: want batch 8 with the offsets of its recorded plan", a.Batches)
			}
		}},
	} {
		t.Run(test.name, func(t *testing.T) {
			s := newStatus(cfg, false, 60)
			test.setup(s)
			srv := httptest.NewServer(apiHandler(s))
			defer srv.Close()
			code, body := httpGet(t, srv.URL)
			if code != http.StatusOK {
				t.Fatalf("/api/status: %d", code)
			}
			if err := schema.Validate([]byte(body)); err != nil {
				t.Fatalf("/api/status does not match %s:\n%v\n%s", statusSchemaFile, err, body)
			}
			var a apiStatusV1
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatal(err)
			}
			test.check(t, a)
		})
	}
}

// TestAPIDocumented: docs/api.md explains every field of the schema.
func TestAPIDocumented(t *testing.T) {
	data, err := os.ReadFile(statusSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for name := range props {
					names = append(names, name)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var schema any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	walk(schema)
	if len(names) < 40 {
		t.Fatalf("found %d fields in the schema", len(names))
	}
	for _, name := range names {
		if !regexp.MustCompile("`" + regexp.QuoteMeta(name) + "`").Match(doc) {
			t.Errorf("docs/api.md does not explain `%s`", name)
		}
	}
}
