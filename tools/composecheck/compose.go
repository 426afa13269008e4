package main

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/dstream-io/dstream/tools/composecheck/contract"
)

// oneShotLabel marks a service that runs once and exits (topic creation, say). It needs no healthcheck, and
// services that wait for it wait for service_completed_successfully.
const oneShotLabel = "io.dstream.one-shot"

// loadCompose loads a compose file the way `docker compose [--profile P]…` does: the Compose spec's schema
// (unknown keys fail), interpolation from the process environment, the services of the given profiles besides those
// without a profile, and consistency checks (depends_on names a service, …).
func loadCompose(ctx context.Context, path string, profiles ...string) (*types.Project, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions([]string{abs}, cli.WithOsEnv, cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithProfiles(profiles))
	if err != nil {
		return nil, fmt.Errorf("compose options: %w", err)
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return project, nil
}

// checkCompose loads the compose file at path and returns what breaks our own rules, one sentence each: those of
// the default services (`docker compose up`), then those of the observability profile.
func checkCompose(ctx context.Context, path string) ([]string, error) {
	project, err := loadCompose(ctx, path)
	if err != nil {
		return nil, err
	}
	problems := checkProject(project)
	withObservability, err := loadCompose(ctx, path, observabilityProfile)
	if err != nil {
		return nil, err
	}
	return append(problems, checkObservability(withObservability)...), nil
}

// checkProject applies the rules that the Compose spec does not know about.
func checkProject(p *types.Project) []string {
	var c checker
	names := slices.Sorted(maps.Keys(p.Services))
	for _, name := range names {
		c.service(p, p.Services[name])
	}

	redis := c.find(p, names, "redis", "redis:")
	if redis != nil {
		c.redis(*redis)
	}
	for _, name := range names {
		s := p.Services[name]
		if strings.HasPrefix(s.Image, "apache/kafka") && !isOneShot(s) {
			c.kafka(s)
		}
	}
	if dstream, ok := p.Services["dstream"]; ok {
		c.dstream(p, dstream)
	} else {
		c.add(`no service named "dstream"`)
	}
	return c.problems
}

type checker struct{ problems []string }

func (c *checker) add(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// find returns the service called name, else the first of names whose image starts with imagePrefix; it records
// a problem when there is none.
func (c *checker) find(p *types.Project, names []string, name, imagePrefix string) *types.ServiceConfig {
	if s, ok := p.Services[name]; ok {
		return &s
	}
	for _, n := range names {
		if s := p.Services[n]; strings.HasPrefix(s.Image, imagePrefix) {
			return &s
		}
	}
	c.add("no %s service (named %q or with an image %s…)", name, name, imagePrefix)
	return nil
}

func isOneShot(s types.ServiceConfig) bool { return s.Labels[oneShotLabel] == "true" }

// service checks the rules every service follows: a healthcheck unless it is a one-shot, depends_on conditions
// that wait for health (or for a one-shot's success), and pinned images.
func (c *checker) service(p *types.Project, s types.ServiceConfig) {
	if isOneShot(s) {
		if s.Restart != types.RestartPolicyNo {
			c.add("service %q: a one-shot (label %s) must have restart: \"no\", not %q", s.Name, oneShotLabel, s.Restart)
		}
	} else if hc := s.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		c.add("service %q: no healthcheck; add one (or, if it runs once and exits, label it %s: \"true\" with restart: \"no\")",
			s.Name, oneShotLabel)
	}

	for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
		target, ok := p.Services[dep]
		if !ok {
			continue // the loader reports unknown services
		}
		want := types.ServiceConditionHealthy
		if isOneShot(target) {
			want = types.ServiceConditionCompletedSuccessfully
		}
		if got := s.DependsOn[dep].Condition; got != want {
			c.add("service %q: depends_on %q waits for %q; use condition: %s", s.Name, dep, got, want)
		}
	}

	if s.Build == nil {
		if problem := imageProblem(s.Image); problem != "" {
			c.add("service %q: image %q %s", s.Name, s.Image, problem)
		}
	} else {
		c.build(p, s)
	}
}

// build checks that a service's build context and Dockerfile exist.
func (c *checker) build(p *types.Project, s types.ServiceConfig) {
	ctxDir := s.Build.Context
	if !filepath.IsAbs(ctxDir) {
		ctxDir = filepath.Join(p.WorkingDir, ctxDir)
	}
	dockerfile := s.Build.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(ctxDir, dockerfile)
	}
	if _, err := os.Stat(dockerfile); err != nil {
		c.add("service %q: build: %v", s.Name, err)
	}
}

// imageProblem says what is wrong with an image reference that is pulled, or "" when it is pinned to a tag or a
// digest other than latest.
func imageProblem(ref string) string {
	if ref == "" {
		return "is empty: set image or build"
	}
	if strings.Contains(ref, "@sha256:") {
		return ""
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return "has no tag: pin a version"
	case tag == "latest":
		return "uses the latest tag: pin a version"
	}
	return ""
}

// redis checks that Redis keeps what dstream writes: an append-only file, and no eviction of checkpoint keys.
func (c *checker) redis(s types.ServiceConfig) {
	args := " " + strings.Join(strings.Fields(strings.Join(s.Command, " ")), " ") + " "
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(args, " "+want+" ") {
			c.add("service %q: command must include %q (got %q)", s.Name, want, strings.TrimSpace(args))
		}
	}
}

// kafka checks a single-node KRaft broker: both roles, a valid cluster id, and internal topics with one replica.
func (c *checker) kafka(s types.ServiceConfig) {
	roles := env(s, "KAFKA_PROCESS_ROLES")
	for _, role := range []string{"broker", "controller"} {
		if !slices.Contains(strings.Split(roles, ","), role) {
			c.add("service %q: KAFKA_PROCESS_ROLES %q lacks %q (a single node is broker and controller)", s.Name, roles, role)
		}
	}
	if id := env(s, "CLUSTER_ID"); id != "" {
		if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(raw) != 16 {
			c.add("service %q: CLUSTER_ID %q is not 16 bytes in unpadded base64url (22 characters)", s.Name, id)
		}
	}
	for _, key := range []string{
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
	} {
		if got := env(s, key); got != "1" {
			c.add("service %q: %s is %q; a single node needs 1", s.Name, key, got)
		}
	}
}

// dstream checks the processor's wiring: brokers and Redis point at services of this file that it waits for, all
// DSTREAM_* names are real settings and none is a secret in plain text, the countries file is mounted read-only,
// and the stop grace period outlasts a batch and the shutdown grace.
func (c *checker) dstream(p *types.Project, s types.ServiceConfig) {
	for name, value := range s.Environment {
		if !strings.HasPrefix(name, contract.Prefix) {
			continue
		}
		known, secret := contract.Lookup(name)
		switch {
		case !known:
			c.add("service %q: %s is not a dstream setting (typo?)", s.Name, name)
		case secret && value != nil && *value != "" && !strings.HasPrefix(*value, "$"):
			c.add("service %q: %s holds a secret in plain text; interpolate it (${VAR}) or use an env_file", s.Name, name)
		}
	}

	for _, key := range []string{"DSTREAM_KAFKA_BROKERS", "DSTREAM_REDIS_ADDR"} {
		value := env(s, key)
		if value == "" {
			c.add("service %q: %s is not set", s.Name, key)
			continue
		}
		for _, addr := range strings.Split(value, ",") {
			host, _, _ := strings.Cut(strings.TrimSpace(addr), ":")
			target, ok := p.Services[host]
			if !ok {
				c.add("service %q: %s names %q, which is no service of this file", s.Name, key, host)
				continue
			}
			if _, waits := s.DependsOn[host]; !waits {
				c.add("service %q: %s points at %q but depends_on does not wait for it", s.Name, key, host)
			}
			if key == "DSTREAM_KAFKA_BROKERS" && !strings.Contains(env(target, "KAFKA_ADVERTISED_LISTENERS"), "//"+strings.TrimSpace(addr)) {
				c.add("service %q: %s uses %q, which service %q does not advertise in KAFKA_ADVERTISED_LISTENERS",
					s.Name, key, addr, host)
			}
		}
	}

	if file := env(s, "DSTREAM_COUNTRIES_FILE"); file != "" {
		c.mounted(p, s, file)
	}

	c.durations(s)
	c.scalable(s)
}

// httpPort is the port dstream serves HTTP on inside its container, from DSTREAM_HTTP_ADDR (or its default).
func httpPort(s types.ServiceConfig) string {
	addr := env(s, contract.Prefix+"HTTP_ADDR")
	if addr == "" {
		addr = contract.Defaults["HTTP_ADDR"]
	}
	return addr[strings.LastIndex(addr, ":")+1:]
}

// scalable checks that `docker compose up --scale dstream=N` can start N instances: no fixed container name and
// no fixed host port (Docker picks a free host port for each replica when published is empty), and that the
// published container port is the one dstream listens on.
func (c *checker) scalable(s types.ServiceConfig) {
	if s.ContainerName != "" {
		c.add("service %q: container_name %q allows one container only; drop it so that --scale works", s.Name, s.ContainerName)
	}
	for _, port := range s.Ports {
		if port.Published != "" {
			c.add("service %q: publishes the fixed host port %s, which clashes under `docker compose up --scale %s=N`; "+
				"leave published empty (Docker picks a free port, `docker compose port` tells which)", s.Name, port.Published, s.Name)
		}
		if want := httpPort(s); strconv.Itoa(int(port.Target)) != want {
			c.add("service %q: publishes container port %d, but dstream listens on %s (DSTREAM_HTTP_ADDR)", s.Name, port.Target, want)
		}
	}
}

// durations checks dstream's timing settings (documented defaults where unset) the way dstream validates them,
// and that docker waits longer than the shutdown grace before it kills the container.
func (c *checker) durations(s types.ServiceConfig) {
	d := map[string]time.Duration{}
	for _, key := range []string{"BATCH_INTERVAL", "WINDOW", "SLIDE", "SHUTDOWN_GRACE"} {
		value := env(s, contract.Prefix+key)
		if value == "" {
			value = contract.Defaults[key]
		}
		v, err := time.ParseDuration(value)
		if err != nil || v <= 0 {
			c.add("service %q: %s%s %q is not a positive duration", s.Name, contract.Prefix, key, value)
			return
		}
		d[key] = v
	}
	for _, key := range []string{"WINDOW", "SLIDE"} {
		if d[key]%d["BATCH_INTERVAL"] != 0 {
			c.add("service %q: %s%s (%v) must be a multiple of %sBATCH_INTERVAL (%v)",
				s.Name, contract.Prefix, key, d[key], contract.Prefix, d["BATCH_INTERVAL"])
		}
	}
	if d["SHUTDOWN_GRACE"] < d["BATCH_INTERVAL"] {
		c.add("service %q: %sSHUTDOWN_GRACE (%v) must be at least %sBATCH_INTERVAL (%v)",
			s.Name, contract.Prefix, d["SHUTDOWN_GRACE"], contract.Prefix, d["BATCH_INTERVAL"])
	}
	grace := time.Duration(0)
	if s.StopGracePeriod != nil {
		grace = time.Duration(*s.StopGracePeriod)
	}
	if grace <= d["SHUTDOWN_GRACE"] {
		c.add("service %q: stop_grace_period (%v) must be longer than %sSHUTDOWN_GRACE (%v), or docker kills dstream mid-batch",
			s.Name, grace, contract.Prefix, d["SHUTDOWN_GRACE"])
	}
}

// mounted checks that file is a read-only bind mount whose source exists.
func (c *checker) mounted(p *types.Project, s types.ServiceConfig, file string) {
	for _, v := range s.Volumes {
		if v.Target != file {
			continue
		}
		if v.Type != types.VolumeTypeBind {
			c.add("service %q: %s is mounted from a %s; bind the file from the repository", s.Name, file, v.Type)
		}
		if !v.ReadOnly {
			c.add("service %q: mount %s read_only: true", s.Name, file)
		}
		src := v.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(p.WorkingDir, src)
		}
		if info, err := os.Stat(src); err != nil {
			c.add("service %q: mount source of %s: %v", s.Name, file, err)
		} else if info.IsDir() {
			c.add("service %q: mount source of %s is a directory, want a file", s.Name, file)
		} else if err := checkCountriesCSV(src); err != nil {
			c.add("service %q: %s: %v", s.Name, v.Source, err)
		}
		return
	}
	c.add("service %q: DSTREAM_COUNTRIES_FILE is %s but no volume mounts a file there", s.Name, file)
}

// checkCountriesCSV checks the ip,country file: an optional "ip,country" header, then an IP address and a
// non-empty country on every line.
func checkCountriesCSV(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 2
	r.TrimLeadingSpace = true
	rows := 0
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if line == 1 && rec[0] == "ip" && rec[1] == "country" {
			continue
		}
		if _, err := netip.ParseAddr(rec[0]); err != nil {
			return fmt.Errorf("line %d: %q is not an IP address", line, rec[0])
		}
		if rec[1] == "" {
			return fmt.Errorf("line %d: no country for %s", line, rec[0])
		}
		rows++
	}
	if rows == 0 {
		return errors.New("no ip,country rows")
	}
	return nil
}

// env returns a service's environment variable, or "" when unset.
func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}
