package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepositoryDockerignore checks what the repository's .dockerignore sends to `docker build`.
func TestRepositoryDockerignore(t *testing.T) {
	rules, err := readDockerignore("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		path    string
		ignored bool
	}{
		{"go.mod", false},
		{"go.sum", false},
		{"cmd/dstream/main.go", false},
		{"cmd/logsender/main.go", false},
		{"microbatch/stream.go", false},
		{"internal/kafkatest/doc.go", false},
		{"tools/httpprobe/main.go", false},
		{"tools/httpprobe/go.mod", false},
		{"microbatch/stream_test.go", true},
		{"tools/composecheck/main.go", true},
		{"charts/dstream/values.yaml", true},
		{"deploy/countries.csv", true},
		{".git/HEAD", true},
		{".tools/bin/helm", true},
		{"bench/results/run.txt", true},
		{"README.md", true},
		{"docker-compose.yml", true},
	} {
		if got := ignored(rules, test.path); got != test.ignored {
			t.Errorf("ignored(%q) = %v, want %v", test.path, got, test.ignored)
		}
	}
}

func TestIgnoreSyntax(t *testing.T) {
	rules := []ignoreRule{{pattern: "docs"}, {pattern: "**/*.tmp"}, {pattern: "tools/*"}, {pattern: "tools/keep", negate: true}}
	for _, test := range []struct {
		path    string
		ignored bool
	}{
		{"docs", true},
		{"docs/a/b.md", true},
		{"src/docs.go", false},
		{"a.tmp", true},
		{"a/b/c.tmp", true},
		{"tools/x/main.go", true},
		{"tools/keep/main.go", false},
		{"tools", false},
	} {
		if got := ignored(rules, test.path); got != test.ignored {
			t.Errorf("ignored(%q) = %v, want %v", test.path, got, test.ignored)
		}
	}
	if !reincluded(rules, "tools") || reincluded(rules, "docs") {
		t.Error("reincluded: want to walk into tools (tools/keep is re-included) and not into docs")
	}
}

// TestBuildContextCatchesMissingFile builds a tiny module whose command embeds a file that .dockerignore drops:
// the build in the filtered context must fail, as `docker build` would.
func TestBuildContextCatchesMissingFile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	root := t.TempDir()
	write(t, root, "go.mod", "module example.com/m\n\ngo 1.26\n")
	write(t, root, ".dockerignore", "**/*.md\n")
	write(t, root, "NOTES.md", "notes\n")
	if err := os.MkdirAll(filepath.Join(root, "cmd", "dstream"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "cmd", "dstream"), "main.go", `package main

import _ "embed"

//go:embed notes.md
var notes string

func main() { println(notes) }
`)
	write(t, filepath.Join(root, "cmd", "dstream"), "notes.md", "notes\n")

	var log strings.Builder
	skipped, err := buildContext(root, &log)
	if err == nil {
		t.Fatal("build succeeded although .dockerignore drops the embedded file")
	}
	if !strings.Contains(log.String(), "notes.md") {
		t.Errorf("build log does not name the missing file:\n%s", log.String())
	}
	if strings.Join(skipped, " ") != "cmd/logsender" {
		t.Errorf("skipped = %q, want the missing cmd/logsender", skipped)
	}

	// Without the ignore rule the same context builds.
	write(t, root, ".dockerignore", "")
	skipped, err = buildContext(root, &log)
	if err != nil {
		t.Fatalf("build without ignore rules: %v\n%s", err, log.String())
	}
	if strings.Join(skipped, " ") != "cmd/logsender tools/httpprobe" {
		t.Errorf("skipped = %q, want the missing cmd/logsender and tools/httpprobe", skipped)
	}
}
