package charttest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
)

var dstream struct {
	once sync.Once
	bin  string
	err  error
}

// dstreamBinary builds cmd/dstream of this repository once, the way the Dockerfile does, and returns its path. The
// test skips while cmd/dstream does not exist.
func dstreamBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "dstream")); err != nil {
		t.Skip("cmd/dstream does not exist yet")
	}
	dstream.once.Do(func() {
		dir, err := os.MkdirTemp("", "charttest-dstream")
		if err != nil {
			dstream.err = err
			return
		}
		dstream.bin = filepath.Join(dir, "dstream")
		cmd := exec.Command("go", "build", "-trimpath", "-o", dstream.bin, "./cmd/dstream")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			dstream.err = fmt.Errorf("go build ./cmd/dstream: %w\n%s", err, out)
		}
	})
	if dstream.err != nil {
		t.Fatal(dstream.err)
	}
	return dstream.bin
}

// podEnv is the environment the chart gives the dstream container: the ConfigMap, then the Secret (which wins),
// with the mounted files' paths pointed at local copies, since there is no pod.
func podEnv(t *testing.T, m manifest) []string {
	t.Helper()
	env := m.env(t)
	for _, s := range m.all("Secret") {
		for k, v := range obj(s["data"]) {
			b, err := base64.StdEncoding.DecodeString(str(v))
			if err != nil {
				t.Fatal(err)
			}
			env[k] = string(b)
		}
	}
	for _, key := range []string{"DSTREAM_COUNTRIES_FILE", "DSTREAM_KAFKA_TLS_CA_FILE", "DSTREAM_REDIS_TLS_CA_FILE"} {
		if env[key] == "" {
			continue
		}
		content := "not a real CA bundle\n"
		if key == "DSTREAM_COUNTRIES_FILE" {
			content = str(dig(m.all("ConfigMap")[slices.IndexFunc(m.all("ConfigMap"), func(o object) bool {
				return strings.HasSuffix(o.name(), "-countries")
			})], "data", "countries.csv"))
		}
		env[key] = writeTemp(t, content)
	}
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// TestDstreamAcceptsChartConfig runs `dstream config` with the environment each value set renders: dstream's own
// validation must accept it, and must mask the secrets the chart passes.
func TestDstreamAcceptsChartConfig(t *testing.T) {
	bin := dstreamBinary(t)
	for _, test := range []struct {
		name  string
		flags []string
		want  []string // lines of dstream config's output
	}{
		{"demo defaults", nil, []string{"DSTREAM_SHARDS=1"}},
		{"kafka and redis", withServices, nil},
		{"standby", withStandby, nil},
		{"sharded on three pods", slices.Concat(withServices, []string{"--set", "replicaCount=3", "--set", "config.shards=4"}),
			[]string{"DSTREAM_SHARDS=4"}},
		{"secrets and tls", slices.Concat(withSecrets, []string{
			"--set", "kafka.tls.enabled=true", "--set", "kafka.tls.caSecret=kafka-ca",
			"--set", "redis.tls.enabled=true", "--set", "redis.tls.caSecret=redis-ca",
			"--set", "redis.user=dstream", "--set", "config.jobId=top-ips-eu",
			"--set", "config.backpressure=true", "--set", "config.maxRatePerPartition=5000",
			"--set", "config.startOffset=latest", "--set", "config.logLevel=debug",
		}), nil},
		{"no dead letters", []string{"--set", "config.deadletterTopic="}, []string{"DSTREAM_DEADLETTER_TOPIC="}},
	} {
		t.Run(test.name, func(t *testing.T) {
			m := render(t, test.flags...)
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "config")
			cmd.Env = podEnv(t, m)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("dstream config: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			for _, line := range test.want {
				if !slices.Contains(strings.Split(stdout.String(), "\n"), line) {
					t.Errorf("dstream config does not say %s:\n%s", line, stdout.String())
				}
			}
			for _, pw := range []string{"kafka-pw-0xC0FFEE", "redis-pw-0xBEEF"} {
				if strings.Contains(stdout.String()+stderr.String(), pw) {
					t.Errorf("dstream config prints the password %s", pw)
				}
			}
		})
	}
}

// TestProbesAgainstDemo starts dstream (demo mode, no Kafka) with the chart's environment on a loopback port and
// asks the Deployment's probe paths what the kubelet would: startup and liveness answer, readiness turns true once
// a batch commits, /metrics serves, and SIGTERM ends the process well within terminationGracePeriodSeconds.
func TestProbesAgainstDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dstream for a few seconds")
	}
	bin := dstreamBinary(t)
	m := render(t, "--set", "config.batchInterval=1s", "--set", "config.window=3s", "--set", "config.slide=1s",
		"--set", "config.shutdownGrace=5s", "--set", "terminationGracePeriodSeconds=10")
	c := m.container(t)
	grace := time.Duration(dig(m.one(t, "Deployment"), "spec", "template", "spec", "terminationGracePeriodSeconds").(int)) * time.Second

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var logs bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(podEnv(t, m), "DSTREAM_HTTP_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("dstream output:\n%s", logs.String())
		}
	}()

	probe := func(name string, within time.Duration) {
		t.Helper()
		path := str(dig(c, name, "httpGet", "path"))
		url := "http://" + addr + path
		deadline := time.Now().Add(within)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			cancel()
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s not OK within %v (last: %v)", name, path, within, statusOrErr(resp, err))
			}
			select {
			case err := <-done:
				t.Fatalf("dstream exited while waiting for %s: %v", name, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	probe("startupProbe", 20*time.Second)
	probe("livenessProbe", time.Second)
	probe("readinessProbe", 20*time.Second)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics: %v", statusOrErr(resp, err))
	}
	if resp != nil {
		resp.Body.Close()
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dstream after SIGTERM: %v, want exit 0", err)
		}
		t.Logf("dstream stopped %v after SIGTERM (terminationGracePeriodSeconds %v)", time.Since(start).Round(time.Millisecond), grace)
	case <-time.After(grace):
		t.Errorf("dstream still running %v after SIGTERM: Kubernetes would kill it", grace)
	}
}

// TestDstreamAcceptsComposeConfig runs `dstream config` with the environment docker-compose.yml gives the dstream
// service (the mounted countries file read from its source in the repository).
func TestDstreamAcceptsComposeConfig(t *testing.T) {
	bin := dstreamBinary(t)
	abs, err := filepath.Abs(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{abs}, cli.WithWorkingDirectory(filepath.Dir(abs)))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := project.Services["dstream"]
	if !ok {
		t.Fatal("no dstream service")
	}
	mounts := map[string]string{}
	for _, v := range svc.Volumes {
		mounts[v.Target] = v.Source
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range svc.Environment {
		if v == nil {
			continue
		}
		value := *v
		if src, ok := mounts[value]; ok {
			value = src // a path inside the container: use the file it is mounted from
		}
		env = append(env, k+"="+value)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "config")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("dstream config with the compose environment: %v\n%s", err, out.String())
	}
}

func statusOrErr(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	if resp == nil {
		return "no response"
	}
	return resp.Status
}
