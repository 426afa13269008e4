package charttest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dstream-io/dstream/tools/composecheck/contract"
)

// repoRoot is the repository root, relative to this package's directory (where go test runs).
const repoRoot = "../../.."

var (
	chartDir = filepath.Join(repoRoot, "charts", "dstream")
	helmBin  string // set by TestMain; "" when helm is missing
)

func TestMain(m *testing.M) {
	helmBin = findHelm()
	// Keep helm away from the user's config, cache and plugins.
	home, err := os.MkdirTemp("", "charttest-helm")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, key := range []string{"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"} {
		os.Setenv(key, filepath.Join(home, key))
	}
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

func findHelm() string {
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := filepath.Abs(filepath.Join(repoRoot, ".tools", "bin", "helm")); err == nil {
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	return ""
}

// requireHelm skips the test when helm is missing, or fails it when DSTREAM_REQUIRE_IT=1.
func requireHelm(t *testing.T) {
	t.Helper()
	if helmBin != "" {
		return
	}
	const msg = "helm not found in .tools/bin, $HELM or PATH; run .ci/install-tools"
	if os.Getenv("DSTREAM_REQUIRE_IT") == "1" {
		t.Fatal(msg + " (DSTREAM_REQUIRE_IT=1)")
	}
	t.Skip(msg)
}

// helm runs helm with args and returns its standard output, or an error carrying its standard error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	requireHelm(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { return str(dig(o, "kind")) }
func (o object) name() string { return str(dig(o, "metadata", "name")) }

// manifest is the output of one helm template run.
type manifest []object

// render runs helm template on the chart with extra flags and fails the test when that fails.
func render(t *testing.T, flags ...string) manifest {
	t.Helper()
	m, err := tryRender(t, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tryRender runs helm template on the chart with extra flags and decodes every document.
func tryRender(t *testing.T, flags ...string) (manifest, error) {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chartDir, "--namespace", "ns"}, flags...)...)
	if err != nil {
		return nil, err
	}
	var m manifest
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode helm template output: %w\n%s", err, out)
		}
		if o != nil {
			m = append(m, o)
		}
	}
}

// all returns the objects of a kind.
func (m manifest) all(kind string) []object {
	var out []object
	for _, o := range m {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of a kind, failing the test unless there is exactly one.
func (m manifest) one(t *testing.T, kind string) object {
	t.Helper()
	objs := m.all(kind)
	if len(objs) != 1 {
		t.Fatalf("rendered %d %s, want 1", len(objs), kind)
	}
	return objs[0]
}

// container returns the Deployment's dstream container.
func (m manifest) container(t *testing.T) object {
	t.Helper()
	for _, c := range list(dig(m.one(t, "Deployment"), "spec", "template", "spec", "containers")) {
		if c := obj(c); c["name"] == "dstream" {
			return c
		}
	}
	t.Fatal("Deployment has no container named dstream")
	return nil
}

// env returns the data of the environment ConfigMap (the one the container's envFrom names).
func (m manifest) env(t *testing.T) map[string]string {
	t.Helper()
	name := ""
	for _, from := range list(m.container(t)["envFrom"]) {
		if ref := str(dig(from, "configMapRef", "name")); ref != "" {
			name = ref
		}
	}
	for _, cm := range m.all("ConfigMap") {
		if cm.name() == name {
			data := map[string]string{}
			for k, v := range obj(cm["data"]) {
				data[k] = str(v)
			}
			return data
		}
	}
	t.Fatalf("no ConfigMap %q for envFrom", name)
	return nil
}

// dig walks maps by string keys and lists by int indices; it returns nil when the path does not exist.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, isObj := v.(object); isObj {
					m, ok = o, true
				}
			}
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

func obj(v any) object {
	switch v := v.(type) {
	case map[string]any:
		return v
	case object:
		return v
	}
	return nil
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// seconds reads a Go duration as seconds.
func seconds(t *testing.T, d string) float64 {
	t.Helper()
	dur, err := time.ParseDuration(d)
	if err != nil {
		t.Fatalf("duration %q: %v", d, err)
	}
	return dur.Seconds()
}

// withStandby and friends are value sets used by several tests.
var (
	withServices = []string{"--set", `kafka.brokers=kafka-0.kafka:9092\,kafka-1.kafka:9092`, "--set", "redis.addr=redis:6379"}
	withStandby  = slices.Concat([]string{"--set", "replicaCount=2"}, withServices)
	withSecrets  = slices.Concat([]string{
		"--set", "kafka.sasl.mechanism=SCRAM-SHA-512", "--set", "kafka.sasl.user=dstream",
		"--set", "kafka.sasl.password=kafka-pw-0xC0FFEE", "--set", "redis.password=redis-pw-0xBEEF",
	}, withServices)
	withMonitor = []string{"--set", "metrics.serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}
)

func TestLint(t *testing.T) {
	for _, test := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"standby", withStandby},
		{"secrets", withSecrets},
		{"existing secret", slices.Concat([]string{"--set", "existingSecret=dstream-creds"}, withServices)},
		{"service monitor without the API", []string{"--set", "metrics.serviceMonitor.enabled=true"}},
		// helm lint takes no --api-versions: the PrometheusRule's values are checked, its rendering is not.
		{"alerts, dashboard, autoscaling", slices.Concat([]string{"--set", "metrics.prometheusRule.enabled=true",
			"--set", "metrics.grafanaDashboard.enabled=true", "--set", "autoscaling.enabled=true"}, withServices)},
		{"tls", slices.Concat([]string{
			"--set", "kafka.tls.enabled=true", "--set", "kafka.tls.caSecret=kafka-ca",
			"--set", "redis.tls.enabled=true", "--set", "redis.tls.caSecret=redis-ca",
		}, withServices)},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			out, err := helm(t, slices.Concat([]string{"lint", "--strict", chartDir}, test.flags)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestDefaultObjects(t *testing.T) {
	m := render(t)
	var kinds []string
	for _, o := range m {
		kinds = append(kinds, o.kind())
	}
	slices.Sort(kinds)
	want := []string{"ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceAccount"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v (no Secret without passwords, no ServiceMonitor, PrometheusRule, dashboard or HPA "+
			"unless asked for, no PodDisruptionBudget for one pod)", kinds, want)
	}
	for _, o := range m {
		labels := obj(dig(o, "metadata", "labels"))
		for _, key := range []string{
			"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/managed-by", "helm.sh/chart",
		} {
			if str(labels[key]) == "" {
				t.Errorf("%s %s: no label %s", o.kind(), o.name(), key)
			}
		}
		if ns := str(dig(o, "metadata", "namespace")); ns != "ns" {
			t.Errorf("%s %s: namespace %q, want the release's", o.kind(), o.name(), ns)
		}
	}

	d := m.one(t, "Deployment")
	if got := dig(d, "spec", "replicas"); got != 1 {
		t.Errorf("replicas = %v, want 1", got)
	}
	if got := str(m.container(t)["image"]); !regexp.MustCompile(`^ghcr\.io/dstream-io/dstream:[0-9]`).MatchString(got) {
		t.Errorf("image = %q, want the repository with the appVersion as tag", got)
	}
	selector := obj(dig(d, "spec", "selector", "matchLabels"))
	podLabels := obj(dig(d, "spec", "template", "metadata", "labels"))
	for k, v := range selector {
		if podLabels[k] != v {
			t.Errorf("pod label %s = %v, selector wants %v", k, podLabels[k], v)
		}
	}
	for _, svcSel := range []any{dig(m.one(t, "Service"), "spec", "selector")} {
		for k, v := range obj(svcSel) {
			if podLabels[k] != v {
				t.Errorf("selector %s=%v does not match the pods (%v)", k, v, podLabels[k])
			}
		}
	}
}

// TestSecurityContext checks that the pod runs as the image's numeric non-root user, read-only, without
// capabilities or privilege escalation, under the runtime's seccomp profile, and without an API token.
func TestSecurityContext(t *testing.T) {
	m := render(t)
	pod := obj(dig(m.one(t, "Deployment"), "spec", "template", "spec"))
	c := m.container(t)

	if got := dig(pod, "securityContext", "runAsNonRoot"); got != true {
		t.Errorf("pod runAsNonRoot = %v, want true", got)
	}
	uid, ok := dig(pod, "securityContext", "runAsUser").(int)
	if !ok || uid <= 0 {
		t.Errorf("pod runAsUser = %v, want a numeric non-root uid", dig(pod, "securityContext", "runAsUser"))
	}
	if want := dockerfileUID(t); uid != want {
		t.Errorf("pod runAsUser = %d, Dockerfile USER = %d: keep them equal", uid, want)
	}
	if got := str(dig(pod, "securityContext", "seccompProfile", "type")); got != "RuntimeDefault" {
		t.Errorf("seccompProfile = %q, want RuntimeDefault", got)
	}
	if got := pod["automountServiceAccountToken"]; got != false {
		t.Errorf("automountServiceAccountToken = %v, want false", got)
	}
	sc := obj(c["securityContext"])
	for key, want := range map[string]any{
		"readOnlyRootFilesystem":   true,
		"allowPrivilegeEscalation": false,
		"runAsNonRoot":             true,
		"privileged":               false,
	} {
		if sc[key] != want {
			t.Errorf("container securityContext.%s = %v, want %v", key, sc[key], want)
		}
	}
	if drop := list(dig(sc, "capabilities", "drop")); !slices.Contains(drop, any("ALL")) {
		t.Errorf("capabilities.drop = %v, want ALL", drop)
	}
	if add := list(dig(sc, "capabilities", "add")); len(add) > 0 {
		t.Errorf("capabilities.add = %v, want none", add)
	}
	// A read-only root needs a writable /tmp.
	if !slices.ContainsFunc(list(c["volumeMounts"]), func(v any) bool { return dig(v, "mountPath") == "/tmp" }) {
		t.Error("no writable /tmp mount next to the read-only root filesystem")
	}
}

// dockerfileUID reads the uid of the Dockerfile's last USER instruction.
func dockerfileUID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	users := regexp.MustCompile(`(?m)^USER\s+([0-9]+)`).FindAllStringSubmatch(string(b), -1)
	if len(users) == 0 {
		t.Fatal("Dockerfile has no numeric USER")
	}
	uid, _ := strconv.Atoi(users[len(users)-1][1])
	return uid
}

func TestProbes(t *testing.T) {
	m := render(t)
	c := m.container(t)
	for probe, path := range map[string]string{
		"startupProbe":   "/healthz",
		"livenessProbe":  "/healthz",
		"readinessProbe": "/readyz",
	} {
		if got := str(dig(c, probe, "httpGet", "path")); got != path {
			t.Errorf("%s path = %q, want %q", probe, got, path)
		}
		if got := str(dig(c, probe, "httpGet", "port")); got != "http" {
			t.Errorf("%s port = %q, want the named port http", probe, got)
		}
	}
	port := obj(dig(c, "ports", 0))
	if port["name"] != "http" || port["containerPort"] != 8080 {
		t.Errorf("container port = %v, want http 8080", port)
	}
	if got := m.env(t)["DSTREAM_HTTP_ADDR"]; got != ":8080" {
		t.Errorf("DSTREAM_HTTP_ADDR = %q, want :8080 to match the container port", got)
	}
	svcPort := obj(dig(m.one(t, "Service"), "spec", "ports", 0))
	if svcPort["name"] != "http" || svcPort["targetPort"] != "http" {
		t.Errorf("Service port = %v, want name http, targetPort http", svcPort)
	}
}

// TestGracePeriod checks that Kubernetes waits longer than dstream's shutdown grace (and so a batch) before it
// kills the pod, and that the chart refuses values that break this.
func TestGracePeriod(t *testing.T) {
	m := render(t)
	grace, ok := dig(m.one(t, "Deployment"), "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if !ok {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	env := m.env(t)
	for _, key := range []string{"DSTREAM_BATCH_INTERVAL", "DSTREAM_SHUTDOWN_GRACE"} {
		if d := seconds(t, env[key]); float64(grace) <= d {
			t.Errorf("terminationGracePeriodSeconds %d <= %s %s", grace, key, env[key])
		}
	}

	// 45 s outlasts 44 s: the boundary renders.
	render(t, "--set", "config.shutdownGrace=44s", "--set", "config.batchInterval=500ms")
}

// TestRenderRefuses checks the combinations of values that the chart refuses with a message, as dstream itself
// would refuse them at start, or because Kubernetes would break them.
func TestRenderRefuses(t *testing.T) {
	for _, test := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--set", "terminationGracePeriodSeconds=30"}, "terminationGracePeriodSeconds (30) must be longer than config.shutdownGrace (30s)"},
		{[]string{"--set", "config.shutdownGrace=1m30s"}, "must be longer than config.shutdownGrace (1m30s)"},
		{[]string{"--set", "config.shutdownGrace=5s"}, "config.shutdownGrace (5s) must be at least config.batchInterval (10s)"},
		{[]string{"--set", "config.window=25s"}, "config.window (25s) must be a positive multiple of config.batchInterval (10s)"},
		{[]string{"--set", "config.slide=0s"}, "config.slide (0s) must be a positive multiple"},
		{[]string{"--set", "config.batchInterval=0s"}, "config.batchInterval (0s) must be positive"},
		{[]string{"--set", "config.leaseTTL=100ms"}, "config.leaseTTL (100ms) must be at least 500ms"},
		{[]string{"--set", "kafka.brokers=kafka:9092"}, "set redis.addr too"},
		{[]string{"--set", "kafka.sasl.mechanism=SCRAM-SHA-512", "--set", "kafka.sasl.password=x"}, "set kafka.sasl.user too"},
		{[]string{"--set", "kafka.sasl.mechanism=SCRAM-SHA-512", "--set", "kafka.sasl.user=u"}, "set kafka.sasl.password, or existingSecret"},
	} {
		t.Run(strings.Join(test.flags, " "), func(t *testing.T) {
			t.Parallel()
			if _, err := tryRender(t, test.flags...); err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("err = %v, want one containing %q", err, test.want)
			}
		})
	}
	// Durations are summed like Go's: 1m30s is 90 s, a multiple of 45 s and 30 s.
	render(t, "--set", "config.batchInterval=45s", "--set", "config.window=1m30s", "--set", "config.slide=45s",
		"--set", "config.shutdownGrace=45s", "--set", "terminationGracePeriodSeconds=60")
	// With existingSecret, SASL needs no password in the values.
	render(t, slices.Concat(withServices, []string{"--set", "kafka.sasl.mechanism=SCRAM-SHA-512", "--set", "kafka.sasl.user=u",
		"--set", "existingSecret=creds"})...)
}

// TestSecretsStayOutOfConfigMaps checks that passwords reach the pod only through a Secret.
func TestSecretsStayOutOfConfigMaps(t *testing.T) {
	passwords := []string{"kafka-pw-0xC0FFEE", "redis-pw-0xBEEF"}
	m := render(t, withSecrets...)

	for _, cm := range m.all("ConfigMap") {
		for key, value := range obj(cm["data"]) {
			if _, secret := contract.Lookup(key); secret || strings.Contains(key, "PASSWORD") {
				t.Errorf("ConfigMap %s has the secret key %s", cm.name(), key)
			}
			for _, pw := range passwords {
				if strings.Contains(str(value), pw) {
					t.Errorf("ConfigMap %s: %s holds a password", cm.name(), key)
				}
			}
		}
	}
	for _, o := range m {
		if o.kind() == "Secret" {
			continue
		}
		out, _ := yaml.Marshal(o)
		for _, pw := range passwords {
			if bytes.Contains(out, []byte(pw)) || bytes.Contains(out, []byte(base64.StdEncoding.EncodeToString([]byte(pw)))) {
				t.Errorf("%s %s contains a password", o.kind(), o.name())
			}
		}
	}

	secret := m.one(t, "Secret")
	got := map[string]string{}
	for key, value := range obj(secret["data"]) {
		known, isSecret := contract.Lookup(key)
		if !known || !isSecret {
			t.Errorf("Secret key %s is not a secret dstream setting", key)
		}
		b, err := base64.StdEncoding.DecodeString(str(value))
		if err != nil {
			t.Errorf("Secret %s: %v", key, err)
		}
		got[key] = string(b)
	}
	if got["DSTREAM_KAFKA_SASL_PASSWORD"] != passwords[0] || got["DSTREAM_REDIS_PASSWORD"] != passwords[1] {
		t.Errorf("Secret data = %v", got)
	}
	if !envFromSecret(m.container(t), secret.name()) {
		t.Errorf("container envFrom does not read Secret %s", secret.name())
	}
	if dig(m.one(t, "Deployment"), "spec", "template", "metadata", "annotations", "checksum/secret") == nil {
		t.Error("no checksum/secret annotation: a password change would not roll the pods")
	}
	env := m.env(t)
	if env["DSTREAM_KAFKA_SASL_USER"] != "dstream" || env["DSTREAM_KAFKA_SASL_MECHANISM"] != "SCRAM-SHA-512" {
		t.Errorf("ConfigMap SASL settings = %q, %q", env["DSTREAM_KAFKA_SASL_USER"], env["DSTREAM_KAFKA_SASL_MECHANISM"])
	}
}

func envFromSecret(container object, name string) bool {
	return slices.ContainsFunc(list(container["envFrom"]), func(v any) bool {
		return str(dig(v, "secretRef", "name")) == name
	})
}

func TestExistingSecret(t *testing.T) {
	m := render(t, slices.Concat([]string{"--set", "existingSecret=dstream-creds"}, withServices)...)
	if s := m.all("Secret"); len(s) != 0 {
		t.Errorf("rendered %d Secrets, want none with existingSecret", len(s))
	}
	if !envFromSecret(m.container(t), "dstream-creds") {
		t.Error("container envFrom does not read the existing Secret dstream-creds")
	}
	if dig(m.one(t, "Deployment"), "spec", "template", "metadata", "annotations", "checksum/secret") != nil {
		t.Error("checksum/secret annotation without a chart-managed Secret")
	}

	_, err := tryRender(t, "--set", "existingSecret=dstream-creds", "--set", "redis.password=x")
	if err == nil || !strings.Contains(err.Error(), "existingSecret is set") {
		t.Errorf("existingSecret with a password: err = %v, want a refusal", err)
	}
	// Without passwords and without existingSecret there is nothing to read.
	if envFromSecret(render(t).container(t), "rel-dstream-secret") {
		t.Error("envFrom reads a Secret that the chart does not render")
	}
}

func TestServiceMonitorGating(t *testing.T) {
	for _, test := range []struct {
		name    string
		flags   []string
		present bool
	}{
		{"off", nil, false},
		{"enabled, API missing", []string{"--set", "metrics.serviceMonitor.enabled=true"}, false},
		{"API present, not enabled", []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}, false},
		{"enabled, API present", withMonitor, true},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			m := render(t, test.flags...)
			sms := m.all("ServiceMonitor")
			if got := len(sms) == 1; got != test.present {
				t.Fatalf("%d ServiceMonitors rendered, want present=%v", len(sms), test.present)
			}
			if !test.present {
				return
			}
			sm := sms[0]
			if got := str(dig(sm, "apiVersion")); got != "monitoring.coreos.com/v1" {
				t.Errorf("apiVersion = %q", got)
			}
			ep := obj(dig(sm, "spec", "endpoints", 0))
			if ep["port"] != "http" || ep["path"] != "/metrics" {
				t.Errorf("endpoint = %v, want port http, path /metrics", ep)
			}
			svcLabels := obj(dig(m.one(t, "Service"), "metadata", "labels"))
			for k, v := range obj(dig(sm, "spec", "selector", "matchLabels")) {
				if svcLabels[k] != v {
					t.Errorf("ServiceMonitor selects %s=%v, Service has %v", k, v, svcLabels[k])
				}
			}
		})
	}
}

// TestSchemaRejects checks that values.schema.json stops bad values before anything renders.
func TestSchemaRejects(t *testing.T) {
	for _, test := range []struct {
		set  string
		want string // in helm's error
	}{
		{"replicaCount=two", "/replicaCount"},
		{"replicaCount=0", "/replicaCount"},
		{"config.startOffset=middle", "/config/startOffset"},
		{"config.batchInterval=10 seconds", "/config/batchInterval"},
		{"config.topN=0", "/config/topN"},
		{"config.shards=0", "/config/shards"},
		{"config.shards=257", "/config/shards"},
		{"config.shards=three", "/config/shards"},
		{"config.logLevel=verbose", "/config/logLevel"},
		{"config.logLevel=trace", "/config/logLevel"},
		{"config.gcPercent=5", "/config/gcPercent"},
		{"config.stateFormat=3", "/config/stateFormat"},
		{"config.backpressureMinRate=0", "/config/backpressureMinRate"},
		{"kafka.sasl.mechanism=PLAIN", "/kafka/sasl/mechanism"},
		{"kafka.brokers=kafka", "/kafka/brokers"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy"},
		{"terminationGracePeriodSeconds=-1", "/terminationGracePeriodSeconds"},
		{"podDisruptionBudget.maxUnavailable=1", "additional properties 'maxUnavailable' not allowed"},
		{"podDisruptionBudget.minAvailable=0", "/podDisruptionBudget/minAvailable"},
		{"podDisruptionBudget.minAvailable=half", "/podDisruptionBudget/minAvailable"},
		{"podDisruptionBudget.minAvailable=150%", "/podDisruptionBudget/minAvailable"},
		{"strategy.rollingUpdate.maxSurge=lots", "/strategy/rollingUpdate/maxSurge"},
		{"metrics.prometheusRule.enabled=yes", "/metrics/prometheusRule/enabled"},
		{"metrics.prometheusRule.noBatchCommitted.intervals=0", "/metrics/prometheusRule/noBatchCommitted/intervals"},
		{"metrics.prometheusRule.deadLetterRate.ratio=2", "/metrics/prometheusRule/deadLetterRate/ratio"},
		{"metrics.prometheusRule.consumerLagGrowing.window=ten minutes", "/metrics/prometheusRule/consumerLagGrowing/window"},
		{"metrics.prometheusRule.consumerLagGrowing.intervalsBehind=0", "/metrics/prometheusRule/consumerLagGrowing/intervalsBehind"},
		{"metrics.prometheusRule.processingSlowerThanInterval.for=soon", "/metrics/prometheusRule/processingSlowerThanInterval/for"},
		{"metrics.prometheusRule.refused.severity=page", "/metrics/prometheusRule/refused/severity"},
		{"metrics.prometheusRule.fenced.windo=1m", "additional properties 'windo' not allowed"},
		{"metrics.prometheusRule.runbookURL=README#ops", "/metrics/prometheusRule/runbookURL"},
		{"metrics.prometheusRule.matchLabels.app-name=x", "invalid propertyName 'app-name'"},
		{"metrics.grafanaDashboard.namespace=Monitoring_NS", "/metrics/grafanaDashboard/namespace"},
		{"metrics.grafanaDashboard.enable=true", "additional properties 'enable' not allowed"},
		{"autoscaling.minReplicas=0", "/autoscaling/minReplicas"},
		{"autoscaling.targetLagPerReplica=0", "/autoscaling/targetLagPerReplica"},
		{"autoscaling.metric=consumer lag", "/autoscaling/metric"},
		{"autoscaling.targetCPU=80", "additional properties 'targetCPU' not allowed"},
		{"replicas=2", "additional properties 'replicas' not allowed"},
		{"config.topn=5", "additional properties 'topn' not allowed"},
	} {
		t.Run(test.set, func(t *testing.T) {
			t.Parallel()
			_, err := tryRender(t, "--set", test.set)
			if err == nil {
				t.Fatalf("--set %s rendered; want the schema to reject it", test.set)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), test.want) {
				t.Errorf("--set %s: err = %v, want a schema error about %q", test.set, err, test.want)
			}
		})
	}
}

// TestChecksumsRollPods checks that a change of settings or of the countries file changes the pod template.
func TestChecksumsRollPods(t *testing.T) {
	annotations := func(flags ...string) object {
		return obj(dig(render(t, flags...).one(t, "Deployment"), "spec", "template", "metadata", "annotations"))
	}
	base := annotations()
	for _, test := range []struct {
		key   string
		flags []string
	}{
		{"checksum/config", []string{"--set", "config.topN=5"}},
		{"checksum/countries", []string{"--set-file", "countries.csv=" + writeTemp(t, "ip,country\n192.0.2.9,FI\n")}},
	} {
		if base[test.key] == nil {
			t.Errorf("no %s annotation", test.key)
			continue
		}
		if changed := annotations(test.flags...); changed[test.key] == base[test.key] {
			t.Errorf("%s unchanged after %v", test.key, test.flags)
		}
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCountries checks that the CSV reaches the container as the file DSTREAM_COUNTRIES_FILE names.
func TestCountries(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "countries.csv"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(chartDir, "files", "countries.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sample, shipped) {
		t.Error("charts/dstream/files/countries.csv differs from deploy/countries.csv: copy one over the other")
	}

	for _, test := range []struct {
		name      string
		flags     []string
		configMap string
		key       string
	}{
		{"chart's ConfigMap", nil, "rel-dstream-countries", "countries.csv"},
		{"existing ConfigMap", []string{"--set", "countries.existingConfigMap=geo", "--set", "countries.existingConfigMapKey=geo.csv"}, "geo", "geo.csv"},
	} {
		t.Run(test.name, func(t *testing.T) {
			m := render(t, test.flags...)
			var volume string
			for _, v := range list(dig(m.one(t, "Deployment"), "spec", "template", "spec", "volumes")) {
				if str(dig(v, "configMap", "name")) == test.configMap {
					volume = str(dig(v, "name"))
					if key := str(dig(v, "configMap", "items", 0, "key")); key != test.key {
						t.Errorf("volume item key = %q, want %q", key, test.key)
					}
				}
			}
			if volume == "" {
				t.Fatalf("no volume from ConfigMap %s", test.configMap)
			}
			var mountPath string
			for _, vm := range list(m.container(t)["volumeMounts"]) {
				if str(dig(vm, "name")) == volume {
					mountPath = str(dig(vm, "mountPath"))
					if dig(vm, "readOnly") != true {
						t.Error("countries mount is not read-only")
					}
				}
			}
			if want := mountPath + "/" + test.key; m.env(t)["DSTREAM_COUNTRIES_FILE"] != want {
				t.Errorf("DSTREAM_COUNTRIES_FILE = %q, want %q", m.env(t)["DSTREAM_COUNTRIES_FILE"], want)
			}
			cms := 0
			for _, cm := range m.all("ConfigMap") {
				if cm.name() == test.configMap {
					cms++
					if got := str(dig(cm, "data", test.key)); got != string(sample) {
						t.Errorf("countries ConfigMap data = %q, want deploy/countries.csv", got)
					}
				}
			}
			if wantCMs := map[bool]int{true: 0, false: 1}[len(test.flags) > 0]; cms != wantCMs {
				t.Errorf("rendered %d countries ConfigMaps, want %d", cms, wantCMs)
			}
		})
	}
}

// TestEnvNamesAreSettings checks every DSTREAM_* key the chart renders against dstream's settings.
func TestEnvNamesAreSettings(t *testing.T) {
	m := render(t, slices.Concat(withSecrets, []string{
		"--set", "kafka.tls.enabled=true", "--set", "kafka.tls.caSecret=kafka-ca",
		"--set", "redis.tls.enabled=true", "--set", "redis.tls.caSecret=redis-ca",
		"--set", "redis.user=dstream", "--set", "config.jobId=top-ips-eu", "--set", "config.controlTopic=top-ips-eu-markers",
	})...)
	env := m.env(t)
	for key := range env {
		if known, _ := contract.Lookup(key); !known {
			t.Errorf("ConfigMap key %s is not a dstream setting", key)
		}
	}
	for name, secret := range contract.Settings {
		if _, ok := env[contract.Prefix+name]; !ok && !secret {
			t.Errorf("setting %s%s is not rendered with every option on", contract.Prefix, name)
		}
	}
	// The CA files are mounted where the settings say.
	mounts := map[string]bool{}
	for _, vm := range list(m.container(t)["volumeMounts"]) {
		mounts[str(dig(vm, "mountPath"))] = true
	}
	for _, key := range []string{"DSTREAM_KAFKA_TLS_CA_FILE", "DSTREAM_REDIS_TLS_CA_FILE"} {
		if !mounts[filepath.Dir(env[key])] {
			t.Errorf("%s = %q, but nothing is mounted at %s", key, env[key], filepath.Dir(env[key]))
		}
	}
}
