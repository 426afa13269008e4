package main

import (
	"bytes"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestCommandLine: every command's --help exits 0 with its help on stdout;
// an unknown command, flag or argument exits 2 with usage on stderr.
func TestCommandLine(t *testing.T) {
	for _, test := range []struct {
		args       []string
		code       int
		stdout     []string // in stdout
		stderr     []string // in stderr
		quietStdio bool     // nothing on stdout
	}{
		{args: []string{"--help"}, stdout: []string{"Usage:", "dstream replay", "DSTREAM_KAFKA_BROKERS"}},
		{args: []string{"-h"}, stdout: []string{"Usage:"}},
		{args: []string{"help"}, stdout: []string{"Usage:"}},
		{args: []string{"run", "--help"}, stdout: []string{"Usage:"}},
		{args: []string{"config", "--help"}, stdout: []string{"usage: dstream config", "Secrets are masked"}},
		{args: []string{"replay", "--help"}, stdout: []string{"usage: dstream replay --batch N", "-from", "-to"}},
		{args: []string{"replay", "-h"}, stdout: []string{"usage: dstream replay"}},
		{args: []string{"version", "--help"}, stdout: []string{"usage: dstream version"}},
		{args: []string{"help", "replay"}, stdout: []string{"usage: dstream replay"}},
		{args: []string{"help", "config"}, stdout: []string{"usage: dstream config"}},
		{args: []string{"version"}, stdout: []string{"dstream ", "revision ", runtime.Version()}},
		{args: []string{"--version"}, stdout: []string{"dstream ", "revision ", runtime.Version()}},
		{args: []string{"-version"}, stdout: []string{"dstream ", "revision ", runtime.Version()}},

		{args: []string{"--bogus"}, code: 2, stderr: []string{"dstream run: flag provided but not defined: -bogus", "Usage:"}, quietStdio: true},
		{args: []string{"run", "extra"}, code: 2, stderr: []string{`dstream run: unexpected argument "extra"`}, quietStdio: true},
		{args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`, "Usage:"}, quietStdio: true},
		{args: []string{"config", "--bogus"}, code: 2, stderr: []string{"dstream config: flag provided but not defined: -bogus", "usage: dstream config"}, quietStdio: true},
		{args: []string{"replay", "--bogus"}, code: 2, stderr: []string{"dstream replay: flag provided but not defined: -bogus", "usage: dstream replay"}, quietStdio: true},
		{args: []string{"replay"}, code: 2, stderr: []string{"give --batch N, or --from N --to M", "usage: dstream replay"}, quietStdio: true},
		{args: []string{"replay", "--from", "5", "--to", "3"}, code: 2, stderr: []string{"usage: dstream replay"}, quietStdio: true},
		{args: []string{"version", "--short"}, code: 2, stderr: []string{"dstream version: flag provided but not defined: -short"}, quietStdio: true},
		{args: []string{"help", "frobnicate"}, code: 2, stderr: []string{`dstream help: unknown command "frobnicate"`}, quietStdio: true},
	} {
		t.Run(strings.Join(test.args, " "), func(t *testing.T) {
			clearEnv(t)
			var stdout, stderr bytes.Buffer
			if code := run(test.args, &stdout, &stderr); code != test.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, test.code, stdout.String(), stderr.String())
			}
			for _, w := range test.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range test.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if test.quietStdio && stdout.Len() > 0 {
				t.Errorf("stdout is not empty:\n%s", stdout.String())
			}
			if test.code == 0 && stderr.Len() > 0 {
				t.Errorf("stderr is not empty:\n%s", stderr.String())
			}
		})
	}
}

// TestVersionFromLinker: the version and revision that the Makefile and the
// Dockerfile set with -ldflags -X reach `dstream version` (TestBuildFrom
// covers the fallback to what Go recorded).
func TestVersionFromLinker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := t.TempDir() + "/dstream"
	out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=1.2.3 -X main.revision=abc123", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("dstream %s: %v", arg, err)
		}
		if want := "dstream 1.2.3\nrevision abc123\n" + runtime.Version() + "\n"; string(out) != want {
			t.Errorf("dstream %s: %q, want %q", arg, out, want)
		}
	}
}

func TestBuildFrom(t *testing.T) {
	stamped := func(mod string, settings ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/dstream-io/dstream", Version: mod}}
		for i := 0; i+1 < len(settings); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return info
	}
	for _, test := range []struct {
		name              string
		version, revision string
		info              *debug.BuildInfo
		want              build
	}{
		{"nothing known", "", "", nil, build{Version: "dev", Revision: "unknown"}},
		{"go run", "", "", stamped("(devel)"), build{Version: "dev", Revision: "unknown"}},
		{"go build in a clone", "", "", stamped("(devel)", "vcs.revision", "537ff00", "vcs.modified", "false"),
			build{Version: "dev", Revision: "537ff00"}},
		{"a modified clone", "", "", stamped("(devel)", "vcs.revision", "537ff00", "vcs.modified", "true"),
			build{Version: "dev", Revision: "537ff00+dirty"}},
		{"go install module@version", "", "", stamped("v1.4.0"), build{Version: "v1.4.0", Revision: "unknown"}},
		{"linked", "1.4.0", "abc123", stamped("v0.9.0", "vcs.revision", "537ff00"), build{Version: "1.4.0", Revision: "abc123"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			test.want.GoVersion = runtime.Version()
			if got := buildFrom(test.version, test.revision, test.info); got != test.want {
				t.Errorf("got %+v, want %+v", got, test.want)
			}
		})
	}
}
