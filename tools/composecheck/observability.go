package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// observabilityProfile is the compose profile that adds Prometheus and Grafana to the stack.
const observabilityProfile = "observability"

// chartDashboard is the Grafana dashboard the Helm chart ships, relative to the compose file's directory. Compose
// must provision this very file, so that Kubernetes and compose show one dashboard.
const chartDashboard = "charts/dstream/files/dstream-dashboard.json"

// checkObservability applies the rules of the observability profile to the project loaded with it: Prometheus and
// Grafana exist only in that profile, follow every service's rules, Prometheus discovers every dstream replica, and
// Grafana is provisioned with that Prometheus and the chart's dashboard file.
func checkObservability(p *types.Project) []string {
	var c checker
	names := slices.Sorted(maps.Keys(p.Services))
	prometheus := c.find(p, names, "prometheus", "prom/prometheus:")
	grafana := c.find(p, names, "grafana", "grafana/grafana:")
	for _, s := range []*types.ServiceConfig{prometheus, grafana} {
		if s == nil {
			continue
		}
		if !slices.Contains(s.Profiles, observabilityProfile) {
			c.add("service %q: not in the %s profile; plain `docker compose up` should start the job's services only", s.Name, observabilityProfile)
		}
		c.service(p, *s)
	}
	dstream, ok := p.Services["dstream"]
	if prometheus != nil && ok {
		c.prometheus(p, *prometheus, dstream)
	}
	if grafana != nil && prometheus != nil {
		c.grafana(p, *grafana, *prometheus)
	}
	return c.problems
}

// bindSource returns the absolute source of the bind mount at target, or "" (with a problem) when there is none
// or it is writable.
func (c *checker) bindSource(p *types.Project, s types.ServiceConfig, target, what string) string {
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if v.Type != types.VolumeTypeBind {
			c.add("service %q: %s (%s) is mounted from a %s; bind it from the repository", s.Name, what, target, v.Type)
			return ""
		}
		if !v.ReadOnly {
			c.add("service %q: mount %s read_only: true", s.Name, target)
		}
		src := v.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(p.WorkingDir, src)
		}
		if _, err := os.Stat(src); err != nil {
			c.add("service %q: mount source of %s: %v", s.Name, target, err)
			return ""
		}
		return filepath.Clean(src)
	}
	c.add("service %q: no volume mounts %s at %s", s.Name, what, target)
	return ""
}

// promConfig is the part of prometheus.yml these rules read.
type promConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// prometheus checks that Prometheus's configuration, mounted from the repository, discovers every replica of
// dstream by DNS (type A, on the port dstream listens on); a static target would see one replica at random.
func (c *checker) prometheus(p *types.Project, s, dstream types.ServiceConfig) {
	config := "/etc/prometheus/prometheus.yml" // the image's default
	for _, arg := range s.Command {
		if v, ok := strings.CutPrefix(arg, "--config.file="); ok {
			config = v
		}
	}
	src := c.bindSource(p, s, config, "the Prometheus configuration")
	if src == "" {
		return
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		c.add("service %q: %v", s.Name, err)
		return
	}
	var cfg promConfig
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		c.add("service %q: %s: %v", s.Name, src, err)
		return
	}
	port := httpPort(dstream)
	discovered := false
	for _, sc := range cfg.ScrapeConfigs {
		for _, static := range sc.StaticConfigs {
			for _, target := range static.Targets {
				if host, _, _ := strings.Cut(target, ":"); host == dstream.Name {
					c.add("service %q: scrape job %q has the static target %s, which reaches one replica of a scaled %s; use dns_sd_configs (type A)",
						s.Name, sc.JobName, target, dstream.Name)
				}
			}
		}
		for _, dns := range sc.DNSSDConfigs {
			if !slices.Contains(dns.Names, dstream.Name) {
				continue
			}
			discovered = true
			if dns.Type != "A" {
				c.add("service %q: scrape job %q looks %s up with type %q; Docker's DNS answers A records (type: A)",
					s.Name, sc.JobName, dstream.Name, dns.Type)
			}
			if fmt.Sprint(dns.Port) != port {
				c.add("service %q: scrape job %q scrapes port %d, but dstream listens on %s", s.Name, sc.JobName, dns.Port, port)
			}
		}
	}
	if !discovered {
		c.add("service %q: no scrape job discovers %q by DNS (dns_sd_configs, type A, port %s)", s.Name, dstream.Name, port)
	}
}

// grafanaProvisioning is the part of Grafana's provisioning files these rules read.
type grafanaProvisioning struct {
	Datasources []struct {
		Type string `yaml:"type"`
		URL  string `yaml:"url"`
	} `yaml:"datasources"`
	Providers []grafanaProvider `yaml:"providers"`
}

// grafanaProvider is a dashboard provider; a file provider loads the dashboards at Options.Path (a directory or a
// file).
type grafanaProvider struct {
	Type    string `yaml:"type"`
	Options struct {
		Path string `yaml:"path"`
	} `yaml:"options"`
}

// grafana checks that Grafana gets the chart's own dashboard file (not a copy), a file provider that loads it, and
// a Prometheus datasource that is this file's Prometheus, which it waits for.
func (c *checker) grafana(p *types.Project, s, prometheus types.ServiceConfig) {
	dashboard := ""
	for _, v := range s.Volumes {
		if strings.HasSuffix(v.Source, ".json") {
			dashboard = v.Target
		}
	}
	want := filepath.Join(p.WorkingDir, chartDashboard)
	if dashboard == "" {
		c.add("service %q: mounts no dashboard; bind %s, the file the Helm chart ships", s.Name, chartDashboard)
	} else if src := c.bindSource(p, s, dashboard, "the dashboard"); src != "" {
		if src != filepath.Clean(want) {
			c.add("service %q: the dashboard comes from %s; bind %s itself, the file the Helm chart ships, so that there is one dashboard",
				s.Name, src, chartDashboard)
		} else if err := checkDashboard(src); err != nil {
			c.add("service %q: %s: %v", s.Name, chartDashboard, err)
		}
	}

	dir := s.Environment["GF_PATHS_PROVISIONING"]
	target := "/etc/grafana/provisioning" // the image's default
	if dir != nil && *dir != "" {
		target = *dir
	}
	src := c.bindSource(p, s, target, "the provisioning directory")
	if src == "" {
		return
	}
	var prov grafanaProvisioning
	for _, sub := range []string{"datasources", "dashboards"} {
		files, _ := filepath.Glob(filepath.Join(src, sub, "*.y*ml"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err == nil {
				var one grafanaProvisioning
				if err = yaml.Unmarshal(raw, &one); err == nil {
					prov.Datasources = append(prov.Datasources, one.Datasources...)
					prov.Providers = append(prov.Providers, one.Providers...)
					continue
				}
			}
			c.add("service %q: %s: %v", s.Name, f, err)
		}
	}

	if dashboard != "" && !slices.ContainsFunc(prov.Providers, func(pr grafanaProvider) bool {
		return pr.Type == "file" && (pr.Options.Path == dashboard || pr.Options.Path == path.Dir(dashboard))
	}) {
		c.add("service %q: no file provider in provisioning/dashboards loads %s", s.Name, dashboard)
	}

	datasources := 0
	for _, ds := range prov.Datasources {
		if ds.Type != "prometheus" {
			continue
		}
		datasources++
		if u, err := url.Parse(ds.URL); err != nil || u.Hostname() != prometheus.Name {
			c.add("service %q: the prometheus datasource's url %q does not name the service %q", s.Name, ds.URL, prometheus.Name)
		}
	}
	if datasources == 0 {
		c.add("service %q: provisions no prometheus datasource", s.Name)
	} else if _, waits := s.DependsOn[prometheus.Name]; !waits {
		c.add("service %q: its datasource is %q but depends_on does not wait for it", s.Name, prometheus.Name)
	}
}

// checkDashboard checks that a Grafana dashboard file is JSON with a uid, a title and panels.
func checkDashboard(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d struct {
		UID    string            `json:"uid"`
		Title  string            `json:"title"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("not a JSON dashboard: %w", err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		return fmt.Errorf("dashboard without uid, title or panels")
	}
	return nil
}
