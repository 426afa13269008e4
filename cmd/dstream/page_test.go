package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status-page.png from TestStatusPageInChromium")

var (
	chartRe    = regexp.MustCompile(`<svg class="chart" data-series="([a-z-]+)" data-points="(\d+)"`)
	polylineRe = regexp.MustCompile(`<polyline class="line" points="([^"]*)"`)
	batchRowRe = regexp.MustCompile(`<tr data-batch="(\d+)"><td>\d+</td><td class="l">([^<]+)</td><td>([^<]+)</td>`)
	resultRe   = regexp.MustCompile(`<tr><td>(\d+)</td><td class="l">([0-9.]+)</td>`)
)

// pageParts is what the status page shows, read back from its HTML.
type pageParts struct {
	charts    map[string]int // series → points
	polylines []string
	batches   []uint64 // table rows, in order
	results   []string // IPs, in rank order
}

func parsePage(html string) pageParts {
	p := pageParts{charts: map[string]int{}}
	for _, m := range chartRe.FindAllStringSubmatch(html, -1) {
		p.charts[m[1]], _ = strconv.Atoi(m[2])
	}
	for _, m := range polylineRe.FindAllStringSubmatch(html, -1) {
		p.polylines = append(p.polylines, m[1])
	}
	for _, m := range batchRowRe.FindAllStringSubmatch(html, -1) {
		id, _ := strconv.ParseUint(m[1], 10, 64)
		p.batches = append(p.batches, id)
	}
	for _, m := range resultRe.FindAllStringSubmatch(html, -1) {
		p.results = append(p.results, m[2])
	}
	return p
}

func TestStatusPage(t *testing.T) {
	cfg := Config{JobID: "top-ips", InputTopic: "logs", OutputTopic: "top-ips", BatchInterval: 10 * time.Second,
		Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3, LeaseTTL: 5 * time.Second}
	t0 := time.Date(2026, 11, 24, 5, 31, 0, 0, time.UTC)
	lag := []partitionLag{{Topic: "logs", Partition: 0, Position: 1200, End: 1450, Lag: 250}, {Topic: "logs", Partition: 1, Position: 900, End: 900}}
	for _, test := range []struct {
		name    string
		batches int
		results []topips.Result
		demo    bool
		role    role
		refused string
		lag     []partitionLag
		want    []string // in the page
		absent  []string // not in the page
	}{
		{name: "no batch yet", role: roleStarting,
			want:   []string{`data-role="starting"`, "no batch committed yet", "no offsets known yet", `id="ready"`, "not ready"},
			absent: []string{`id="demo"`, `id="refused"`}},
		{name: "one batch", batches: 1, role: roleActive, results: []topips.Result{{Rank: 1, IP: "10.0.0.1", Count: 5, Country: "PT", Total: 5}},
			want: []string{`data-role="active"`, `<dd id="last-batch">1</dd>`, `<dd id="last-commit">05:31:02 UTC</dd>`}},
		{name: "more batches than rows", batches: 45, role: roleActive, lag: lag, results: []topips.Result{
			{Rank: 1, IP: "211.191.62.46", Count: 2312, Country: "PT", Total: 9120},
			{Rank: 2, IP: "126.229.132.89", Count: 1047, Country: "unknown", Total: 3001},
		}, want: []string{
			// checkpoint time and lag at plan of batch 45
			"<td>5.50 ms</td><td>440</td>",
			`<tr data-partition="0"><td class="l">logs</td><td>0</td><td>1` + "\u2009" + `200</td><td>1` + "\u2009" + `450</td><td>250</td></tr>`,
			`<dd id="lag">250 records</dd>`,
		}},
		{name: "demo", demo: true, role: roleActive, want: []string{`id="demo"`, "DEMO"}},
		{name: "standby", batches: 3, role: roleStandby, want: []string{`data-role="standby"`, "3 run here"}},
		{name: "refused", role: roleRefused, refused: "state lost: the checkpoint is at batch 0 but the output already holds batch 7",
			want: []string{`data-role="refused"`, `<p class="refused" id="refused"><b>Refusing to run the job.</b> state lost: the checkpoint is at batch 0`, "not ready"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			s := newStatus(cfg, test.demo, 60)
			s.live.lag = func(context.Context, []microbatch.Range) []partitionLag { return test.lag }
			if test.role != roleStarting {
				s.checked(nil, nil)
			}
			s.setRole(test.role)
			if test.refused != "" {
				s.refuse(test.refused)
			}
			for i := range test.batches {
				id := uint64(i + 1)
				bt := t0.Add(time.Duration(i) * cfg.BatchInterval)
				s.planned(microbatch.Plan{ID: id, Time: bt, Ranges: []microbatch.Range{{Topic: "logs", From: int64(i) * 10, Until: int64(i+1) * 10}}}, int64(10*i))
				s.observe(microbatch.BatchStats{ID: id, Time: bt,
					Records: 1000 * (i%7 + 1), SchedulingDelay: time.Duration(i) * time.Millisecond,
					ProcessingTime: time.Duration(50+i) * time.Millisecond, CheckpointTime: time.Duration(i) * 125 * time.Microsecond,
					StateChanges: i, Messages: 3}, bt.Add(2*time.Second))
			}
			if test.results != nil {
				s.results(microbatch.BatchInfo{Plan: microbatch.Plan{ID: uint64(test.batches), Time: t0}}, test.results)
			}
			srv := httptest.NewServer(newHandler(newMetrics(), s))
			defer srv.Close()
			code, html := httpGet(t, srv.URL+"/")
			if code != http.StatusOK {
				t.Fatalf("GET /: %d", code)
			}
			for _, w := range test.want {
				if !strings.Contains(html, w) {
					t.Errorf("the page lacks %q", w)
				}
			}
			for _, w := range test.absent {
				if strings.Contains(html, w) {
					t.Errorf("the page shows %q", w)
				}
			}
			got := parsePage(html)
			for _, series := range []string{"input-rate", "scheduling-delay", "processing-time"} {
				n, ok := got.charts[series]
				if !ok {
					t.Errorf("no %s chart", series)
				}
				if n != test.batches {
					t.Errorf("%s chart has %d points, want %d", series, n, test.batches)
				}
			}
			if strings.Contains(html, "http://") || strings.Contains(html, "https://") {
				t.Errorf("the page loads something from elsewhere")
			}
			if test.batches == 0 {
				if len(got.polylines) != 0 || !strings.Contains(html, "no batch committed yet") {
					t.Errorf("empty page draws lines or misses its note")
				}
				return
			}
			if len(got.polylines) != 3 {
				t.Fatalf("%d polylines, want 3", len(got.polylines))
			}
			for _, pts := range got.polylines {
				if n := len(strings.Fields(pts)); n != test.batches {
					t.Errorf("polyline has %d points, want %d: %q", n, test.batches, pts)
				}
			}
			wantRows := min(test.batches, pageRows)
			if len(got.batches) != wantRows || got.batches[0] != uint64(test.batches) {
				t.Errorf("batch rows %v: want %d rows, newest (%d) first", got.batches, wantRows, test.batches)
			}
			if len(got.results) != len(test.results) || len(test.results) > 0 && got.results[0] != test.results[0].IP {
				t.Errorf("results %v, want %v", got.results, test.results)
			}
		})
	}
}

func TestNiceCeil(t *testing.T) {
	for _, test := range []struct{ in, want float64 }{
		{0, 1}, {-3, 1}, {0.3, 0.3}, {0.31, 0.4}, {1, 1}, {1.01, 1.5}, {2, 2}, {4.9, 5}, {7, 8}, {8.5, 10}, {10, 10}, {2080, 2500},
	} {
		if got := niceCeil(test.in); got != test.want {
			t.Errorf("niceCeil(%v) = %v, want %v", test.in, got, test.want)
		}
	}
}

// chromium finds a headless-capable Chromium, skipping the test without one
// unless DSTREAM_REQUIRE_IT=1.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("DSTREAM_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("DSTREAM_REQUIRE_IT") == "1" {
		t.Fatal("no chromium on PATH: run .ci/install-browser")
	}
	t.Skip("no chromium on PATH: run .ci/install-browser (set DSTREAM_REQUIRE_IT=1 to fail instead of skipping)")
	return ""
}

// runChromium runs headless Chromium on url with extra flags and returns
// its standard output.
func runChromium(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	interval, want := 200*time.Millisecond, 5
	if *updateScreenshot {
		interval, want = time.Second, 40 // a fuller picture for the README
	}
	p := startProcessor(t, configFrom(t, demoEnv(interval)))
	before := p.waitBatches(t, want, 3*time.Minute)
	url := "http://" + p.addr + "/"

	dom := runChromium(t, bin, url, "--dump-dom")
	got := parsePage(dom)
	for _, series := range []string{"input-rate", "scheduling-delay", "processing-time"} {
		if got.charts[series] < want {
			t.Errorf("%s chart has %d points, want at least %d", series, got.charts[series], want)
		}
	}
	if len(got.polylines) != 3 {
		t.Errorf("%d polylines with data, want 3", len(got.polylines))
	}
	for _, pts := range got.polylines {
		if len(strings.Fields(pts)) < want {
			t.Errorf("a polyline has fewer than %d points: %q", want, pts)
		}
	}
	if len(got.batches) == 0 || got.batches[0] < before.Job.CommittedBatch {
		t.Errorf("latest batch row %v: want batch %d or later first", got.batches, before.Job.CommittedBatch)
	}
	if len(got.results) == 0 {
		t.Errorf("no results on the page")
	}
	// The demo's badge (the page once read the broker setting after the
	// demo had set it), the role, and the columns operators asked for.
	for _, want := range []string{`id="demo"`, `data-role="active"`, `>ready</span>`, "<th>Checkpoint time</th>", "Lag at plan</th>", `<tr data-partition="3">`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, url, "--screenshot="+shot, "--window-size=1280,1300")
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1300 {
		t.Errorf("screenshot is %v, want 1280x1300", b)
	}
	if n := colours(img); n < 8 {
		t.Errorf("screenshot has %d colours: blank page?", n)
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "status-page.png"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/status-page.png (%d bytes)", len(data))
	}
}

// colours counts the distinct colours of img, up to 1000.
func colours(img image.Image) int {
	seen := map[string]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 1000; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[fmt.Sprint(r>>8, g>>8, bl>>8)] = true
		}
	}
	return len(seen)
}
