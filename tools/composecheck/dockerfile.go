package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// instruction is one Dockerfile instruction, continuation lines joined and comments dropped.
type instruction struct {
	line int    // where it starts, 1-based
	cmd  string // upper case: FROM, RUN, …
	args string
}

// stage is one FROM and the instructions that follow it.
type stage struct {
	from         instruction
	image, name  string
	instructions []instruction
}

// parseDockerfile splits a Dockerfile into the ARGs before the first FROM and its stages. It knows just enough of
// the syntax for checkDockerfile: comments, `\` continuations, FROM [--flag…] image [AS name].
func parseDockerfile(r io.Reader) (globalArgs map[string]string, stages []stage, err error) {
	globalArgs = map[string]string{}
	var (
		sc      = bufio.NewScanner(r)
		lineNo  int
		pending strings.Builder
		start   int
	)
	flush := func() {
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		switch {
		case in.cmd == "FROM":
			fields := strings.Fields(in.args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:]
			}
			st := stage{from: in}
			if len(fields) > 0 {
				st.image = fields[0]
			}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			globalArgs[name] = strings.Trim(def, `"`)
		case len(stages) > 0:
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
		}
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, parser directives, and comment lines inside a continuation
		}
		if pending.Len() == 0 {
			start = lineNo
		}
		if cont, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		flush()
	}
	flush()
	return globalArgs, stages, sc.Err()
}

var (
	numericUser = regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`)
	argRef      = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
)

// checkDockerfile returns what breaks our rules for the image, one sentence each: a multi-stage build of static,
// trimmed binaries with a module cache mount; pinned base images; a final stage that runs as a numeric non-root
// user, exposes 8080, starts dstream, and carries OCI labels.
func checkDockerfile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	args, stages, err := parseDockerfile(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}

	var c checker
	if len(stages) < 2 {
		c.add("not a multi-stage build: want a builder stage and a runtime stage, found %d FROM", len(stages))
		return c.problems, nil
	}
	var names []string
	for i, st := range stages {
		if slices.Contains(names, st.image) {
			continue // FROM an earlier stage
		}
		image := argRef.ReplaceAllStringFunc(st.image, func(ref string) string {
			if v, ok := args[argRef.FindStringSubmatch(ref)[1]]; ok && v != "" {
				return v
			}
			return ref
		})
		if strings.Contains(image, "$") {
			c.add("line %d: FROM %s: give the ARG a default before the first FROM", st.from.line, st.image)
		} else if problem := imageProblem(image); problem != "" {
			c.add("line %d: FROM %s %s", st.from.line, image, problem)
		}
		if st.name != "" {
			names = append(names, st.name)
		}
		for _, in := range st.instructions {
			if in.cmd != "COPY" {
				continue
			}
			for _, field := range strings.Fields(in.args) {
				from, ok := strings.CutPrefix(field, "--from=")
				if ok && !slices.Contains(names, from) && !isStageIndex(from, i) && imageProblem(from) != "" {
					c.add("line %d: COPY --from=%s names no earlier stage and no pinned image", in.line, from)
				}
			}
		}
	}

	build := stages[:len(stages)-1]
	c.goBuild(build)
	c.runtime(stages[len(stages)-1])
	return c.problems, nil
}

func isStageIndex(s string, current int) bool {
	var n int
	_, err := fmt.Sscanf(s, "%d", &n)
	return err == nil && fmt.Sprint(n) == s && n < current
}

// goBuild checks the builder stages: static, trimmed binaries of both commands, with a module cache mount.
func (c *checker) goBuild(stages []stage) {
	var runs []instruction
	cgoOff := false
	for _, st := range stages {
		for _, in := range st.instructions {
			switch in.cmd {
			case "RUN":
				runs = append(runs, in)
			case "ENV":
				cgoOff = cgoOff || strings.Contains(in.args, "CGO_ENABLED=0")
			}
		}
	}
	var build *instruction
	for i := range runs {
		if strings.Contains(runs[i].args, "go build") {
			build = &runs[i]
			break
		}
	}
	if build == nil {
		c.add("no builder stage runs `go build`")
		return
	}
	for _, want := range []string{"-trimpath", "./cmd/dstream", "./cmd/logsender"} {
		if !strings.Contains(build.args, want) {
			c.add("line %d: go build lacks %s", build.line, want)
		}
	}
	if ldflags := regexp.MustCompile(`-ldflags[= ]+["']?([^"']*)`).FindStringSubmatch(build.args); ldflags == nil ||
		!slices.Contains(strings.Fields(ldflags[1]), "-s") || !slices.Contains(strings.Fields(ldflags[1]), "-w") {
		c.add(`line %d: go build lacks -ldflags "-s -w"`, build.line)
	}
	if !cgoOff && !strings.Contains(build.args, "CGO_ENABLED=0") {
		c.add("line %d: set CGO_ENABLED=0 (ENV or on the go build line): the runtime image has no libc", build.line)
	}
	if !strings.Contains(build.args, "--mount=type=cache") || !strings.Contains(build.args, "target=/go/pkg/mod") {
		c.add("line %d: go build should mount the module cache (--mount=type=cache,target=/go/pkg/mod)", build.line)
	}
}

// runtime checks the final stage.
func (c *checker) runtime(st stage) {
	last := map[string]instruction{}
	var labels []string
	for _, in := range st.instructions {
		last[in.cmd] = in
		if in.cmd == "LABEL" {
			labels = append(labels, in.args)
		}
	}

	if user, ok := last["USER"]; !ok {
		c.add("final stage (line %d) sets no USER: add a numeric non-root USER such as 65532:65532", st.from.line)
	} else if !numericUser.MatchString(user.args) {
		c.add("line %d: USER %s: use a numeric uid[:gid], so that Kubernetes can verify runAsNonRoot", user.line, user.args)
	} else if uid, _, _ := strings.Cut(user.args, ":"); strings.TrimLeft(uid, "0") == "" {
		c.add("line %d: USER %s is root", user.line, user.args)
	}

	if expose, ok := last["EXPOSE"]; !ok || !slices.ContainsFunc(strings.Fields(expose.args), func(p string) bool {
		return p == "8080" || p == "8080/tcp"
	}) {
		c.add("final stage: EXPOSE 8080 (the http port)")
	}

	if ep, ok := last["ENTRYPOINT"]; !ok {
		c.add("final stage: no ENTRYPOINT; want [\"/usr/local/bin/dstream\"]")
	} else {
		var argv []string
		if err := json.Unmarshal([]byte(ep.args), &argv); err != nil || len(argv) == 0 || argv[0] != "/usr/local/bin/dstream" {
			c.add("line %d: ENTRYPOINT %s: want the exec form [\"/usr/local/bin/dstream\"]", ep.line, ep.args)
		}
	}

	all := strings.Join(labels, " ")
	for _, key := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"} {
		if !strings.Contains(all, key+"=") {
			c.add("final stage: no LABEL %s", key)
		}
	}
}
