package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// ignoreRule is one line of a .dockerignore file.
type ignoreRule struct {
	pattern string // slash-separated, cleaned, no leading "/" or "!"
	negate  bool
}

// readDockerignore reads the rules of a .dockerignore file; a missing file has none.
func readDockerignore(file string) ([]ignoreRule, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules []ignoreRule
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, strings.TrimSpace(rest)
		}
		r.pattern = strings.TrimPrefix(path.Clean(filepath.ToSlash(line)), "/")
		rules = append(rules, r)
	}
	return rules, sc.Err()
}

// ignored reports whether the context path rel (slash-separated) is left out of the build context. Like Docker,
// a pattern also matches everything below a matching directory, "**/" matches any number of directories, and the
// last matching rule wins. This covers the syntax our .dockerignore uses, not every corner of Docker's.
func ignored(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		if ruleMatches(r.pattern, rel) {
			out = !r.negate
		}
	}
	return out
}

func ruleMatches(pattern, rel string) bool {
	parts := strings.Split(rel, "/")
	for end := 1; end <= len(parts); end++ { // rel itself or one of its parent directories
		prefix := strings.Join(parts[:end], "/")
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for start := 0; start < end; start++ {
				if m, _ := path.Match(rest, strings.Join(parts[start:end], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := path.Match(pattern, prefix); m {
			return true
		}
	}
	return false
}

// copyContext copies what `docker build root` would send as build context into dst.
func copyContext(root, dst string) error {
	rules, err := readDockerignore(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if ignored(rules, rel) && !reincluded(rules, rel) {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if ignored(rules, rel) || !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, filepath.Join(dst, rel))
	})
}

// reincluded reports whether a negated rule may bring back something below the ignored directory dir, so that
// the walk has to go in.
func reincluded(rules []ignoreRule, dir string) bool {
	dirParts := strings.Split(dir, "/")
	for _, r := range rules {
		if !r.negate {
			continue
		}
		if strings.HasPrefix(r.pattern, "**/") {
			return true
		}
		parts := strings.Split(r.pattern, "/")
		if len(parts) <= len(dirParts) {
			continue
		}
		under := true
		for i, part := range dirParts {
			if m, _ := path.Match(parts[i], part); !m {
				under = false
				break
			}
		}
		if under {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// imageBuilds are the `go build` runs of the Dockerfile's build stage: the directory (in the context) and the
// packages. checkDockerfile makes sure the Dockerfile still builds these.
var imageBuilds = []struct {
	dir  string
	pkgs []string
}{
	{".", []string{"./cmd/dstream", "./cmd/logsender"}},
	{"tools/httpprobe", []string{"."}},
}

// buildContext reproduces the Dockerfile's build stage without Docker: it copies the build context as
// .dockerignore filters it, then builds the image's binaries there the way the Dockerfile does (static, trimmed).
// This catches a .dockerignore that drops a needed file, cgo creeping in, and commands that do not build.
// Packages that do not exist yet are reported in skipped, not as failures.
func buildContext(root string, log io.Writer) (skipped []string, err error) {
	ctx, err := os.MkdirTemp("", "dstream-build-context")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(ctx)
	if err := copyContext(root, ctx); err != nil {
		return nil, fmt.Errorf("copy build context: %w", err)
	}
	out := filepath.Join(ctx, ".out") + string(filepath.Separator)
	for _, b := range imageBuilds {
		var pkgs []string
		for _, pkg := range b.pkgs {
			if _, err := os.Stat(filepath.Join(root, b.dir, pkg)); err != nil {
				skipped = append(skipped, path.Join(b.dir, pkg))
				continue
			}
			pkgs = append(pkgs, pkg)
		}
		if len(pkgs) == 0 {
			continue
		}
		args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out}, pkgs...)
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(ctx, b.dir)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-trimpath", "GOWORK=off")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return skipped, fmt.Errorf("go %s in the build context's %s: %w", strings.Join(args, " "), b.dir, err)
		}
	}
	return skipped, nil
}
