package main

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Grafana dashboard and the alert rules ship with the Helm chart; docker-compose.yml provisions the same
// dashboard file. They are only as good as the metric names and units they rely on, so these tests hold them
// against what a running dstream exposes.
var (
	dashboardFile = filepath.Join("..", "..", "charts", "dstream", "files", "dstream-dashboard.json")
	rulesFile     = filepath.Join("..", "..", "charts", "dstream", "templates", "prometheusrule.yaml")
)

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"` // a string, or {"query": "…"} in newer Grafana
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels returns the dashboard's panels, those inside collapsed rows included.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// queries returns the dashboard's PromQL: each target's expr by "panel title/refId", and each query variable's
// query by "variable name".
func (d dashboard) queries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range d.allPanels() {
		for _, target := range p.Targets {
			out[p.Title+"/"+target.RefID] = target.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct{ Query string }
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q = obj.Query
		}
		out["variable "+v.Name] = q
	}
	return out
}

// TestDashboardLoads checks the dashboard's structure: a uid, panels that take their data source from the
// dashboard's data source variable (so it works in any Grafana, the chart's sidecar and compose alike), unique ids,
// a layout inside the 24 columns without overlaps, and only defined variables in the queries.
func TestDashboardLoads(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both must be set (the sidecar and the compose provider key dashboards by uid)", d.UID, d.Title)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	dsVar := ""
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no data source variable: the dashboard would be tied to one Grafana's data source uid")
	}

	ids := map[int]string{}
	var boxes []panel
	queries := 0
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside the 24 columns", p.Title, p.GridPos)
		}
		for _, b := range boxes {
			if p.GridPos.X < b.GridPos.X+b.GridPos.W && b.GridPos.X < p.GridPos.X+p.GridPos.W &&
				p.GridPos.Y < b.GridPos.Y+b.GridPos.H && b.GridPos.Y < p.GridPos.Y+p.GridPos.H {
				t.Errorf("panels %q and %q overlap", p.Title, b.Title)
			}
		}
		boxes = append(boxes, p)
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			queries++
			if strings.TrimSpace(target.Expr) == "" {
				t.Errorf("panel %q/%s: empty expr", p.Title, target.RefID)
			}
			if target.Datasource == nil || target.Datasource.UID != dsVar {
				t.Errorf("panel %q/%s: data source %+v, want uid %s", p.Title, target.RefID, target.Datasource, dsVar)
			}
		}
	}
	if queries < 10 {
		t.Errorf("%d queries: the dashboard lost its panels", queries)
	}
	for where, q := range d.queries(t) {
		for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(q, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: uses $%s, which the dashboard does not define", where, m[1])
			}
		}
	}
}

// alertExprs returns the PromQL of each alert of the chart's PrometheusRule template, by alert name, with Helm's
// template actions (label selectors and thresholds) cut out.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	actions := regexp.MustCompile(`\{\{.*?\}\}`)
	out := map[string]string{}
	alert := ""
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if name, ok := strings.CutPrefix(line, "- alert: "); ok {
			alert = name
			continue
		}
		if line != "expr: |-" {
			continue
		}
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		var expr []string
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" ||
			len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
			i++
			expr = append(expr, actions.ReplaceAllString(lines[i], ""))
		}
		if alert == "" || out[alert] != "" {
			t.Fatalf("%s: an expr that belongs to no alert, or a second one for %q", rulesFile, alert)
		}
		out[alert] = strings.Join(expr, "\n")
	}
	if n := strings.Count(string(raw), "- alert: "); len(out) != n || n == 0 {
		t.Fatalf("%s: read %d exprs for %d alerts", rulesFile, len(out), n)
	}
	return out
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true}
)

// promqlMetrics returns the metric names a PromQL expression selects: the identifiers left once strings, label
// matchers, ranges and grouping clauses are cut out, that are not functions (followed by a parenthesis), keywords,
// parts of numbers or Grafana variables. label_values(metric, label), Grafana's variable query, names its metric
// as its first argument.
func promqlMetrics(expr string) []string {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(expr), "label_values("); ok {
		comma := strings.LastIndex(rest, ",")
		if comma < 0 { // label_values(label): no metric
			return nil
		}
		expr = rest[:comma]
	}
	expr = promqlStrings.ReplaceAllString(expr, `""`)
	expr = promqlMatchers.ReplaceAllString(expr, " ")
	expr = promqlRanges.ReplaceAllString(expr, " ")
	expr = promqlGrouping.ReplaceAllString(expr, " ")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("0123456789.$", rune(expr[loc[0]-1])) {
			continue // 1e3, 0.5e-1, $variable
		}
		if after := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(after, "(") {
			continue // a function or an aggregation
		}
		if promqlKeywords[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestPromqlMetrics(t *testing.T) {
	for _, test := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`sum by (le) (rate(a_bucket{job=~"$job", le!="+Inf"}[$__rate_interval]))`, []string{"a_bucket"}},
		{`histogram_quantile(0.99, sum without (instance) (rate(b[5m:1m])))`, []string{"b"}},
		{`time() - max(c) > 3 * d and on (namespace, job) e == 1 or f offset 1h`, []string{"c", "d", "e", "f"}},
		{`x / ignoring(pod) group_left(version) y > 1e3`, []string{"x", "y"}},
		{`label_values(g{namespace=~"$namespace", job=~"$job"}, instance)`, []string{"g"}},
		{`label_values(job)`, nil},
		{`sum(h{a="by (x) and rate(z)"})`, []string{"h"}},
	} {
		if got := promqlMetrics(test.expr); !slices.Equal(got, test.want) {
			t.Errorf("promqlMetrics(%q) = %q, want %q", test.expr, got, test.want)
		}
	}
}

// TestDashboardAndAlertsUseExposedMetrics starts dstream (demo mode), scrapes /metrics after its first batches,
// and checks that every metric the dashboard's queries and the alert rules select is there, and that the values
// the alerts compute with have the units they assume (seconds, unix seconds, 0/1).
func TestDashboardAndAlertsUseExposedMetrics(t *testing.T) {
	d := loadDashboard(t)
	used := map[string][]string{} // metric name → where it is used
	for where, q := range d.queries(t) {
		for _, m := range promqlMetrics(q) {
			used[m] = append(used[m], "dashboard "+where)
		}
	}
	for alert, expr := range alertExprs(t) {
		names := promqlMetrics(expr)
		if len(names) == 0 {
			t.Errorf("alert %s: no metric in %q", alert, expr)
		}
		for _, m := range names {
			used[m] = append(used[m], "alert "+alert)
		}
	}
	for _, want := range []string{"dstream_active", "dstream_consumer_lag_records", "dstream_batch_interval_seconds"} {
		if len(used[want]) == 0 {
			t.Errorf("%s is used nowhere: the metric extraction lost it", want)
		}
	}

	const interval = 200 * time.Millisecond
	start := time.Now()
	p := startProcessor(t, configFrom(t, demoEnv(interval)))
	p.waitBatches(t, 2, 2*time.Minute)
	code, text := p.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	samples := scrape(t, text)
	exposed := map[string]bool{}
	for k := range samples {
		name, _, _ := strings.Cut(k, "{")
		exposed[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		if !exposed[name] {
			where := slices.Compact(slices.Sorted(slices.Values(used[name])))
			t.Errorf("%s is not in a real /metrics scrape; used by %s", name, strings.Join(where, ", "))
		}
	}

	// The alerts compare these with each other and with time(): a unit mistake would make them silent or noisy.
	now := float64(time.Now().Unix())
	for _, check := range []struct {
		name string
		ok   func(v float64) bool
		want string
	}{
		{"dstream_active", func(v float64) bool { return v == 1 }, "1: the demo's only instance runs the batches"},
		{"dstream_refused", func(v float64) bool { return v == 0 }, "0"},
		{"dstream_fenced_total", func(v float64) bool { return v == 0 }, "0"},
		{"dstream_batch_interval_seconds", func(v float64) bool { return v == interval.Seconds() }, "the interval in seconds, 0.2"},
		{"dstream_last_commit_timestamp_seconds", func(v float64) bool {
			return v >= float64(start.Unix())-1 && v <= now+1
		}, "a unix time in seconds since the test started"},
		{"dstream_last_committed_batch_time_seconds", func(v float64) bool {
			return math.Abs(v-now) < 60
		}, "a unix time in seconds, within a minute of now"},
	} {
		v, n := family(samples, check.name)
		if n != 1 {
			t.Errorf("%s: %d series, want 1", check.name, n)
		} else if !check.ok(v) {
			t.Errorf("%s = %v, want %s", check.name, v, check.want)
		}
	}
	if v, n := family(samples, "dstream_build_info"); n != 1 || v != 1 {
		t.Errorf("dstream_build_info: %d series summing to %v, want one series of 1", n, v)
	}
	for k := range samples {
		if strings.HasPrefix(k, "dstream_build_info{") {
			for _, label := range []string{"version=", "revision=", "go_version="} {
				if !strings.Contains(k, label) {
					t.Errorf("%s lacks the label %s", k, strings.TrimSuffix(label, "="))
				}
			}
		}
	}
}
