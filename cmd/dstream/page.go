package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dstream-io/dstream/internal/topips"
)

// The status page at / is Spark's Streaming tab for one job: timelines of
// input rate, scheduling delay and processing time over the recent batches,
// the latest batches, and the current results. It is rendered on the server
// with inline SVG; a few lines of script swap in a fresh copy every batch.

//go:embed page.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"clock":  func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"stamp":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"millis": fmtMillis,
	"count":  countOf,
}).Parse(pageSource))

// pageRows is how many of the latest batches the table lists.
const pageRows = 20

// page is what the template renders.
type page struct {
	Job, Input, Output string
	Demo               bool
	Version            string
	Interval           time.Duration
	Window, Slide      time.Duration
	TopN               int
	Started            time.Time
	Uptime             time.Duration
	Role               role
	Refused            string
	Ready              bool
	ReadyWhy           string
	Committed          batch // the job's last committed batch
	Ran                uint64
	Fenced             int
	Lag                []partitionLag
	LagTotal           int64
	Tasks              []apiTask // a sharded job's; one for an unsharded job
	Charts             []chart
	Batches            []batch // newest first
	Results            []topips.Result
	ResultsTime        time.Time
	RefreshMillis      int64
}

// chart is one timeline: a value per batch, drawn as an SVG polyline with
// a dot (and tooltip) per batch.
type chart struct {
	ID, Title, Unit string
	Avg, Last       string
	Width, Height   int
	Line            string // polyline points
	Area            string // closed polygon under the line
	Dots            []dot
	YTicks          []tick
	XTicks          []tick
	Left, Right     float64 // plot edges, for the axes
	Bottom          float64
	MidX, MidY      float64 // plot centre, for "no batch yet"
}

type dot struct {
	X, Y  float64
	Title string
}

type tick struct {
	X, Y   float64
	Label  string
	Anchor string // text-anchor of an x label
}

func pageHandler(s *status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := s.snapshot()
		var lag []partitionLag
		var tasks []apiTask
		ctx, cancel := context.WithTimeout(r.Context(), apiLagTimeout)
		if s.live.lag != nil {
			lag = s.live.lag(ctx, snap.Committed.Ranges)
		}
		if s.live.tasks != nil && s.cfg.Shards > 1 {
			tasks = s.live.tasks(ctx)
		}
		cancel()
		p := buildPage(s, snap, lag, time.Now())
		p.Tasks = tasks
		var buf bytes.Buffer
		if err := pageTemplate.Execute(&buf, p); err != nil {
			http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	})
}

func buildPage(s *status, snap snapshot, lag []partitionLag, now time.Time) page {
	cfg := s.cfg
	p := page{
		Job: cfg.JobID, Input: cfg.InputTopic, Output: cfg.OutputTopic, Demo: s.demo, Version: s.build.Version,
		Interval: cfg.BatchInterval, Window: cfg.Window, Slide: cfg.Slide, TopN: cfg.TopN,
		Started: s.started, Uptime: now.Sub(s.started).Round(time.Second),
		Role: snap.Role, Refused: snap.Refused, Ready: snap.Ready, ReadyWhy: snap.ReadyWhy,
		Committed: snap.Committed, Ran: snap.Ran, Fenced: snap.Fenced, Lag: lag,
		Results: snap.Results, ResultsTime: snap.ResultsTime,
		RefreshMillis: min(max(cfg.BatchInterval, time.Second), 10*time.Second).Milliseconds(),
	}
	for _, l := range lag {
		p.LagTotal += l.Lag
	}
	bs := snap.Batches
	inputRate := func(i int) float64 {
		since := cfg.BatchInterval
		if i > 0 && bs[i].Time.After(bs[i-1].Time) {
			since = bs[i].Time.Sub(bs[i-1].Time)
		}
		return rate(bs[i].Records, since)
	}
	p.Charts = []chart{
		newChart("input-rate", "Input rate", "records/s", bs, inputRate, fmtRate),
		newChart("scheduling-delay", "Scheduling delay", "ms", bs, func(i int) float64 { return ms(bs[i].SchedulingDelay) }, fmtMs),
		newChart("processing-time", "Processing time", "ms", bs, func(i int) float64 { return ms(bs[i].ProcessingTime) }, fmtMs),
	}
	for i := len(bs) - 1; i >= 0 && len(p.Batches) < pageRows; i-- {
		p.Batches = append(p.Batches, bs[i])
	}
	return p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 400, 170
	padL, padR             = 48, 10
	padT, padB             = 10, 26
	plotW, plotH   float64 = chartW - padL - padR, chartH - padT - padB
)

// newChart draws value(i) of every batch of bs.
func newChart(id, title, unit string, bs []batch, value func(i int) float64, format func(float64) string) chart {
	c := chart{ID: id, Title: title, Unit: unit, Width: chartW, Height: chartH,
		Left: padL, Right: chartW - padR, Bottom: padT + plotH, MidX: padL + plotW/2, MidY: padT + plotH/2,
		Avg: "–", Last: "–"}
	if len(bs) == 0 {
		return c
	}
	vals := make([]float64, len(bs))
	peak, sum := 0.0, 0.0
	for i := range bs {
		vals[i] = value(i)
		peak, sum = max(peak, vals[i]), sum+vals[i]
	}
	c.Avg, c.Last = format(sum/float64(len(vals))), format(vals[len(vals)-1])
	top := niceCeil(peak)
	t0, t1 := bs[0].Time, bs[len(bs)-1].Time
	x := func(i int) float64 {
		if span := t1.Sub(t0); span > 0 {
			return padL + plotW*float64(bs[i].Time.Sub(t0))/float64(span)
		}
		return padL + plotW/2
	}
	y := func(v float64) float64 { return padT + plotH - plotH*v/top }
	var line strings.Builder
	for i, v := range vals {
		px, py := round1(x(i)), round1(y(v))
		if i > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(strconv.FormatFloat(px, 'f', -1, 64) + "," + strconv.FormatFloat(py, 'f', -1, 64))
		c.Dots = append(c.Dots, dot{X: px, Y: py,
			Title: fmt.Sprintf("batch %d at %s: %s %s", bs[i].ID, bs[i].Time.UTC().Format("15:04:05"), format(v), unit)})
	}
	c.Line = line.String()
	c.Area = fmt.Sprintf("%g,%g %s %g,%g", round1(x(0)), c.Bottom, c.Line, round1(x(len(bs)-1)), c.Bottom)
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, tick{Y: round1(y(f * top)), Label: format(f * top)})
	}
	if len(bs) == 1 {
		c.XTicks = append(c.XTicks, tick{X: round1(x(0)), Label: t0.UTC().Format("15:04:05"), Anchor: "middle"})
	} else {
		c.XTicks = append(c.XTicks, tick{X: round1(x(0)), Label: t0.UTC().Format("15:04:05"), Anchor: "start"},
			tick{X: round1(x(len(bs) - 1)), Label: t1.UTC().Format("15:04:05"), Anchor: "end"})
	}
	return c
}

// niceCeil rounds v up to a round number: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
// times a power of ten (1 for v ≤ 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Floor(math.Log10(v))
	scaled := func(m float64) float64 { // m·10^e, exact for negative e too
		if e < 0 {
			return m / math.Pow(10, -e)
		}
		return m * math.Pow(10, e)
	}
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8} {
		if c := scaled(m); v <= c*(1+1e-9) {
			return c
		}
	}
	return scaled(10)
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func fmtRate(v float64) string { return fmtCount(int64(math.Round(v))) }

func fmtMs(v float64) string {
	switch {
	case v >= 100 || v == math.Trunc(v):
		return fmtCount(int64(math.Round(v)))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtMillis(d time.Duration) string { return fmtMs(ms(d)) + " ms" }

// countOf formats the integers the template shows.
func countOf(v any) string {
	switch n := v.(type) {
	case int:
		return fmtCount(int64(n))
	case int64:
		return fmtCount(n)
	case uint64:
		return fmtCount(int64(n))
	case *int64:
		return fmtCount(*n)
	}
	return fmt.Sprint(v)
}

// fmtCount writes n with thin thousands separators: 1 234 567.
func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u2009")
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
