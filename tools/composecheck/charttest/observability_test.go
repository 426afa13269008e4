package charttest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Value sets of the observability tests.
var (
	ruleAPI   = []string{"--api-versions", "monitoring.coreos.com/v1/PrometheusRule"}
	withRules = slices.Concat([]string{"--set", "metrics.prometheusRule.enabled=true"}, ruleAPI)
	withHPA   = slices.Concat([]string{"--set", "autoscaling.enabled=true"}, withServices)
)

// alertNames are the alerts the chart ships; README's Operations section documents each under its own heading.
var alertNames = []string{
	"DstreamConsumerLagGrowing", "DstreamNoBatchCommitted", "DstreamProcessingSlowerThanInterval",
	"DstreamFenced", "DstreamRefused", "DstreamDeadLetterRateHigh",
}

// rules returns the rendered PrometheusRule's rules, each a map with alert, expr, for, labels and annotations.
func rules(t *testing.T, m manifest) []object {
	t.Helper()
	var out []object
	for _, g := range list(dig(m.one(t, "PrometheusRule"), "spec", "groups")) {
		for _, r := range list(dig(g, "rules")) {
			out = append(out, obj(r))
		}
	}
	return out
}

func TestPrometheusRuleGating(t *testing.T) {
	for _, test := range []struct {
		name    string
		flags   []string
		present bool
	}{
		{"off", nil, false},
		{"enabled, API missing", []string{"--set", "metrics.prometheusRule.enabled=true"}, false},
		{"API present, not enabled", ruleAPI, false},
		{"ServiceMonitor API only", []string{"--set", "metrics.prometheusRule.enabled=true", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}, false},
		{"enabled, API present", withRules, true},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			if got := len(render(t, test.flags...).all("PrometheusRule")); got != map[bool]int{true: 1, false: 0}[test.present] {
				t.Errorf("%d PrometheusRules rendered, want present=%v", got, test.present)
			}
		})
	}
}

// TestAlertRuleShape checks every alert the chart renders: the expected set, a severity, the annotations an
// operator reads, and expressions that select this release's series only (the job label a ServiceMonitor gives
// them is the Service's name).
func TestAlertRuleShape(t *testing.T) {
	m := render(t, slices.Concat(withRules, withMonitor, []string{
		"--set", "metrics.prometheusRule.labels.release=prometheus",
		"--set", "metrics.prometheusRule.alertLabels.team=streaming",
	})...)
	if got := str(dig(m.one(t, "PrometheusRule"), "metadata", "labels", "release")); got != "prometheus" {
		t.Errorf("PrometheusRule label release = %q, want the value's", got)
	}
	service := m.one(t, "Service").name()
	if sm := m.one(t, "ServiceMonitor"); dig(sm, "spec", "jobLabel") != nil {
		t.Errorf("ServiceMonitor sets jobLabel: the rules' job=%q selector would match nothing", service)
	}
	selector := fmt.Sprintf(`job="%s", namespace="ns"`, service)
	matchers := regexp.MustCompile(`[a-z_:]+\{([^}]*)\}`)

	var names []string
	for _, r := range rules(t, m) {
		name := str(r["alert"])
		names = append(names, name)
		expr := str(r["expr"])
		found := matchers.FindAllStringSubmatch(expr, -1)
		if len(found) == 0 {
			t.Errorf("%s: no metric selector in %q", name, expr)
		}
		for _, sel := range found {
			if sel[1] != selector {
				t.Errorf("%s: selector {%s}, want {%s}: another release's series would count", name, sel[1], selector)
			}
		}
		labels := obj(r["labels"])
		if sev := str(labels["severity"]); sev != "warning" && sev != "critical" {
			t.Errorf("%s: severity %q", name, sev)
		}
		if labels["team"] != "streaming" {
			t.Errorf("%s: labels %v lack alertLabels", name, labels)
		}
		ann := obj(r["annotations"])
		for _, key := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(str(ann[key])) == "" {
				t.Errorf("%s: no %s annotation", name, key)
			}
		}
		if want := "https://github.com/dstream-io/dstream/blob/main/README.md#" + strings.ToLower(name); ann["runbook_url"] != want {
			t.Errorf("%s: runbook_url %v, want %s", name, ann["runbook_url"], want)
		}
	}
	if !slices.Equal(names, alertNames) {
		t.Errorf("alerts = %v, want %v", names, alertNames)
	}

	// Own matchers replace the default ones; thresholds and severities come from the values.
	m = render(t, slices.Concat(withRules, []string{
		"--set", "metrics.prometheusRule.matchLabels.app=dstream", "--set", "metrics.prometheusRule.runbookURL=",
		"--set", "metrics.prometheusRule.noBatchCommitted.intervals=5", "--set", "metrics.prometheusRule.refused.severity=warning",
	})...)
	for _, r := range rules(t, m) {
		for _, sel := range matchers.FindAllStringSubmatch(str(r["expr"]), -1) {
			if sel[1] != `app="dstream"` {
				t.Errorf("%s: selector {%s}, want {app=\"dstream\"}", r["alert"], sel[1])
			}
		}
		if _, ok := obj(r["annotations"])["runbook_url"]; ok {
			t.Errorf("%s: runbook_url without a runbookURL", r["alert"])
		}
		switch r["alert"] {
		case "DstreamNoBatchCommitted":
			if !strings.Contains(str(r["expr"]), "> 5 * dstream_batch_interval_seconds") {
				t.Errorf("intervals=5 not in %s", r["expr"])
			}
		case "DstreamRefused":
			if dig(r, "labels", "severity") != "warning" {
				t.Errorf("DstreamRefused severity = %v, want the value's", dig(r, "labels", "severity"))
			}
		}
	}
}

// requirePromtool returns promtool from $PROMTOOL, .tools/bin (installed by .ci/install-tools) or PATH; it skips
// the test without it, or fails it when DSTREAM_REQUIRE_IT=1.
func requirePromtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if p, err := filepath.Abs(filepath.Join(repoRoot, ".tools", "bin", "promtool")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	const msg = "promtool not found in $PROMTOOL, .tools/bin or PATH; run .ci/install-tools"
	if os.Getenv("DSTREAM_REQUIRE_IT") == "1" {
		t.Fatal(msg + " (DSTREAM_REQUIRE_IT=1)")
	}
	t.Skip(msg)
	return ""
}

// TestAlertRules runs promtool on the rendered rules: `promtool check rules` (syntax, PromQL, templates, lint) and
// `promtool test rules` with testdata/alerts_test.yaml, which must hold a case where each alert fires and one where
// it does not.
func TestAlertRules(t *testing.T) {
	bin := requirePromtool(t)
	m := render(t, withRules...)
	spec, err := yaml.Marshal(dig(m.one(t, "PrometheusRule"), "spec"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s\nrules:\n%s", strings.Join(args, " "), err, out, spec)
		}
		return string(out)
	}
	out := run("check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(alertNames)); !strings.Contains(out, want) {
		t.Errorf("promtool check rules: %q, want %q", out, want)
	}
	run("test", "rules", "alerts_test.yaml")

	// Every alert is tested both ways.
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(tests, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, group := range file.Tests {
		for _, c := range group.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				quiet[c.Alertname] = true
			}
		}
	}
	for _, name := range alertNames {
		if !fires[name] || !quiet[name] {
			t.Errorf("testdata/alerts_test.yaml: %s has a firing case: %v, a quiet case: %v; want both", name, fires[name], quiet[name])
		}
	}
}

// TestAlertRunbooks checks that each alert's runbook_url points at a heading of README.md.
func TestAlertRunbooks(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, h := range regexp.MustCompile(`(?m)^#+ +(.+)$`).FindAllStringSubmatch(string(readme), -1) {
		anchors[githubAnchor(h[1])] = true
	}
	for _, r := range rules(t, render(t, withRules...)) {
		url := str(dig(r, "annotations", "runbook_url"))
		_, anchor, _ := strings.Cut(url, "#")
		if !anchors[anchor] {
			t.Errorf("%s: runbook_url %s: README.md has no heading with the anchor #%s", r["alert"], url, anchor)
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading: lower case, spaces to hyphens, punctuation dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGrafanaDashboard(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join(chartDir, "files", "dstream-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	dashboards := func(m manifest) []object {
		var out []object
		for _, cm := range m.all("ConfigMap") {
			if _, ok := obj(cm["data"])["dstream.json"]; ok {
				out = append(out, cm)
			}
		}
		return out
	}
	if n := len(dashboards(render(t))); n != 0 {
		t.Errorf("%d dashboard ConfigMaps by default, want none", n)
	}

	for _, test := range []struct {
		name      string
		flags     []string
		namespace string
		labels    map[string]string
	}{
		{"sidecar defaults", []string{"--set", "metrics.grafanaDashboard.enabled=true"}, "ns", map[string]string{"grafana_dashboard": "1"}},
		{"Grafana's namespace and folder", []string{"--set", "metrics.grafanaDashboard.enabled=true",
			"--set", "metrics.grafanaDashboard.namespace=monitoring", "--set", "metrics.grafanaDashboard.labels.grafana_dashboard=dstream",
			"--set", "metrics.grafanaDashboard.annotations.grafana_folder=Streaming"},
			"monitoring", map[string]string{"grafana_dashboard": "dstream"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			cms := dashboards(render(t, test.flags...))
			if len(cms) != 1 {
				t.Fatalf("%d dashboard ConfigMaps, want 1", len(cms))
			}
			cm := cms[0]
			if ns := str(dig(cm, "metadata", "namespace")); ns != test.namespace {
				t.Errorf("namespace %q, want %q", ns, test.namespace)
			}
			for k, v := range test.labels {
				if got := str(dig(cm, "metadata", "labels", k)); got != v {
					t.Errorf("label %s = %q, want %q (the sidecar selects by it)", k, got, v)
				}
			}
			if test.namespace == "monitoring" && str(dig(cm, "metadata", "annotations", "grafana_folder")) != "Streaming" {
				t.Errorf("annotations = %v", dig(cm, "metadata", "annotations"))
			}
			data := str(dig(cm, "data", "dstream.json"))
			if data != strings.TrimSuffix(string(shipped), "\n") {
				t.Error("the ConfigMap's dstream.json differs from files/dstream-dashboard.json")
			}
			var d struct{ UID string }
			if err := json.Unmarshal([]byte(data), &d); err != nil || d.UID == "" {
				t.Errorf("dstream.json: uid %q, %v", d.UID, err)
			}
		})
	}
}

// TestDisruptionBudget checks the PodDisruptionBudget's meaning: with every healthy pod Ready, it keeps a majority
// of the job's pods through voluntary disruptions, yet always lets a drain evict one pod at a time.
func TestDisruptionBudget(t *testing.T) {
	for _, test := range []struct {
		name  string
		flags []string
		want  any // minAvailable; nil: no budget
	}{
		{"1 pod: none", nil, nil},
		{"2 pods: 1 (a majority of two would block every drain)", []string{"--set", "replicaCount=2"}, 1},
		{"3 pods: 2", []string{"--set", "replicaCount=3"}, 2},
		{"4 pods: 3", []string{"--set", "replicaCount=4"}, 3},
		{"6 pods: 4", []string{"--set", "replicaCount=6"}, 4},
		{"autoscaling from 3: 2", []string{"--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=3", "--set", "autoscaling.maxReplicas=6"}, 2},
		{"set: 3 of 3", []string{"--set", "replicaCount=3", "--set", "podDisruptionBudget.minAvailable=3"}, 3},
		{"set: a percentage", []string{"--set", "replicaCount=6", "--set", "podDisruptionBudget.minAvailable=51%"}, "51%"},
		{"set for 1 pod", []string{"--set", "podDisruptionBudget.minAvailable=1"}, 1},
		{"disabled", []string{"--set", "replicaCount=3", "--set", "podDisruptionBudget.enabled=false"}, nil},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, slices.Concat(test.flags, withServices, []string{"--kube-version", "1.30.0"})...)
			pdbs := m.all("PodDisruptionBudget")
			if test.want == nil {
				if len(pdbs) != 0 {
					t.Fatalf("rendered a PodDisruptionBudget %v, want none", pdbs[0]["spec"])
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
			}
			spec := obj(pdbs[0]["spec"])
			if spec["minAvailable"] != test.want {
				t.Errorf("minAvailable = %#v, want %#v", spec["minAvailable"], test.want)
			}
			if _, ok := spec["maxUnavailable"]; ok {
				t.Error("maxUnavailable set beside minAvailable")
			}
			if spec["unhealthyPodEvictionPolicy"] != "AlwaysAllow" {
				t.Errorf("unhealthyPodEvictionPolicy = %v, want AlwaysAllow: a pod that is not Ready cannot run the job anyway", spec["unhealthyPodEvictionPolicy"])
			}
			podLabels := obj(dig(m.one(t, "Deployment"), "spec", "template", "metadata", "labels"))
			for k, v := range obj(dig(spec, "selector", "matchLabels")) {
				if podLabels[k] != v {
					t.Errorf("PDB selects %s=%v, pods have %v", k, v, podLabels[k])
				}
			}
		})
	}
	if _, err := tryRender(t, slices.Concat(withServices, []string{"--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=3"})...); err == nil ||
		!strings.Contains(err.Error(), "podDisruptionBudget.minAvailable (3) is more than replicaCount (2)") {
		t.Errorf("minAvailable above replicaCount: err = %v, want a refusal", err)
	}
}

// TestReadiness checks the chart's side of "every healthy pod is Ready": readiness asks /readyz, the Service routes
// to every Ready pod, and a rollout waits for each new pod to be Ready before it stops an old one, which only works
// because standbys are Ready.
func TestReadiness(t *testing.T) {
	m := render(t, slices.Concat(withStandby, []string{"--kube-version", "1.30.0"})...)
	d := m.one(t, "Deployment")
	if got := dig(d, "spec", "replicas"); got != 2 {
		t.Errorf("replicas = %v, want 2", got)
	}
	if got := str(dig(m.container(t), "readinessProbe", "httpGet", "path")); got != "/readyz" {
		t.Errorf("readiness path = %q", got)
	}
	if got := dig(m.one(t, "Service"), "spec", "publishNotReadyAddresses"); got == true {
		t.Error("the Service publishes pods that are not Ready: it would route to a pod that refuses the job")
	}
	strategy := obj(dig(d, "spec", "strategy"))
	if strategy["type"] != "RollingUpdate" || dig(strategy, "rollingUpdate", "maxUnavailable") != 0 || dig(strategy, "rollingUpdate", "maxSurge") != 1 {
		t.Errorf("strategy = %v, want RollingUpdate with maxSurge 1, maxUnavailable 0", strategy)
	}
	if dig(d, "spec", "template", "spec", "affinity", "podAntiAffinity") == nil {
		t.Error("no default pod anti-affinity with standbys")
	}
	env := m.env(t)
	if env["DSTREAM_REDIS_ADDR"] != "redis:6379" || env["DSTREAM_KAFKA_BROKERS"] != "kafka-0.kafka:9092,kafka-1.kafka:9092" {
		t.Errorf("env = %v", env)
	}
	if _, ok := env["DSTREAM_JOB_ID"]; ok {
		t.Error("DSTREAM_JOB_ID set by default: all replicas must share the job's id, which defaults to the job")
	}
	if _, err := tryRender(t, "--set", "replicaCount=2"); err == nil || !strings.Contains(err.Error(), "set redis.addr") {
		t.Errorf("replicaCount 2 without Redis: err = %v, want a refusal", err)
	}
	old := render(t, slices.Concat(withStandby, []string{"--kube-version", "1.26.0"})...)
	if dig(old.one(t, "PodDisruptionBudget"), "spec", "unhealthyPodEvictionPolicy") != nil {
		t.Error("unhealthyPodEvictionPolicy rendered for Kubernetes 1.26")
	}
}

// renderNotes renders the chart's NOTES.txt with the given flags. helm template leaves NOTES.txt out, so a copy of
// the chart gets one more template that includes it into a ConfigMap.
func renderNotes(t *testing.T, flags ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dstream")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	probe := `apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | quote }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, slices.Concat([]string{"template", "rel", dir, "--namespace", "ns", "--show-only", "templates/zz-notes.yaml"}, flags)...)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct{ Data struct{ Notes string } }
	if err := yaml.Unmarshal([]byte(out), &cm); err != nil || cm.Data.Notes == "" {
		t.Fatalf("notes: %v\n%s", err, out)
	}
	return cm.Data.Notes
}

func TestNotes(t *testing.T) {
	notes := renderNotes(t, withStandby...)
	for _, want := range []string{"2/2", "dstream_active", "keep at least 1 of the pods running"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES with 2 replicas lack %q:\n%s", want, notes)
		}
	}
	for _, stale := range []string{"1/2", "0/1", "Only the active pod is", "routes to the active pod only"} {
		if strings.Contains(notes, stale) {
			t.Errorf("NOTES still say %q (standbys are Ready now):\n%s", stale, notes)
		}
	}
	notes = renderNotes(t, "--set", "metrics.prometheusRule.enabled=true")
	if !strings.Contains(notes, "no\nPrometheusRule (alerts) was created") {
		t.Errorf("NOTES do not say that the PrometheusRule needs the API:\n%s", notes)
	}
	if notes := renderNotes(t, slices.Concat(withRules, []string{"--set", "metrics.grafanaDashboard.enabled=true"})...); strings.Contains(notes, "no\nPrometheusRule") ||
		!strings.Contains(notes, "ConfigMap rel-dstream-dashboard") {
		t.Errorf("NOTES with rules and dashboard:\n%s", notes)
	}
}

func TestAutoscaling(t *testing.T) {
	if hpas := render(t, withStandby...).all("HorizontalPodAutoscaler"); len(hpas) != 0 {
		t.Errorf("%d HorizontalPodAutoscalers by default, want none", len(hpas))
	}
	m := render(t, slices.Concat(withHPA, []string{"--set", "autoscaling.minReplicas=2", "--set", "autoscaling.maxReplicas=5"})...)
	hpa := m.one(t, "HorizontalPodAutoscaler")
	if got := str(dig(hpa, "apiVersion")); got != "autoscaling/v2" {
		t.Errorf("apiVersion %q", got)
	}
	d := m.one(t, "Deployment")
	if ref := obj(dig(hpa, "spec", "scaleTargetRef")); ref["kind"] != "Deployment" || ref["name"] != d.name() || ref["apiVersion"] != "apps/v1" {
		t.Errorf("scaleTargetRef = %v, want the Deployment %s", ref, d.name())
	}
	if _, ok := obj(d["spec"])["replicas"]; ok {
		t.Error("the Deployment sets replicas beside an HPA: every upgrade would reset the HPA's choice")
	}
	if dig(hpa, "spec", "minReplicas") != 2 || dig(hpa, "spec", "maxReplicas") != 5 {
		t.Errorf("min/max = %v/%v, want 2/5", dig(hpa, "spec", "minReplicas"), dig(hpa, "spec", "maxReplicas"))
	}
	metric := obj(dig(hpa, "spec", "metrics", 0))
	if metric["type"] != "External" || dig(metric, "external", "metric", "name") != "dstream_consumer_lag_records" {
		t.Errorf("metric = %v, want the External metric dstream_consumer_lag_records", metric)
	}
	if got := dig(metric, "external", "metric", "selector", "matchLabels", "job"); got != m.one(t, "Service").name() {
		t.Errorf("metric selector job = %v, want the Service's name (the job label of its series)", got)
	}
	if target := obj(dig(metric, "external", "target")); target["type"] != "AverageValue" || target["averageValue"] != "100000" {
		t.Errorf("target = %v, want AverageValue 100000 (lag per pod)", target)
	}
	if dig(hpa, "spec", "behavior", "scaleDown", "stabilizationWindowSeconds") != 600 {
		t.Errorf("behavior = %v", dig(hpa, "spec", "behavior"))
	}
	if dig(d, "spec", "template", "spec", "affinity", "podAntiAffinity") == nil {
		t.Error("no default pod anti-affinity with autoscaling")
	}

	for _, test := range []struct {
		flags []string
		want  string
	}{
		{slices.Concat(withHPA, []string{"--set", "autoscaling.minReplicas=4", "--set", "autoscaling.maxReplicas=3"}), "autoscaling.maxReplicas (3) must be at least autoscaling.minReplicas (4)"},
		{[]string{"--set", "autoscaling.enabled=true"}, "autoscaling runs more than one pod"},
	} {
		if _, err := tryRender(t, test.flags...); err == nil || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%v: err = %v, want %q", test.flags, err, test.want)
		}
	}
}
