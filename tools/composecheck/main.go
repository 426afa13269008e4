// Command composecheck validates dstream's container packaging without a container engine:
//
//   - docker-compose.yml loads with the Compose spec's own loader (compose-go, as `docker compose` uses), and
//     follows our rules: every long-running service has a healthcheck, depends_on waits for service_healthy (or
//     for a one-shot's successful completion), Redis runs with appendonly and noeviction, dstream gets
//     DSTREAM_KAFKA_BROKERS and DSTREAM_REDIS_ADDR pointing at services it waits for, and more (see checkProject).
//   - Dockerfile is a multi-stage build of static binaries whose final stage runs as a numeric non-root user, and
//     no base image floats on a latest tag (see checkDockerfile).
//   - With -build-context, the Dockerfile's go build runs in a copy of the build context as .dockerignore filters
//     it, with CGO_ENABLED=0 (see buildContext).
//
// Usage, from the repository root (.ci/check-packaging does this):
//
//	go -C tools/composecheck run . -root "$PWD" -build-context
//
// It prints each problem on a line of its own and exits 1 when there is any, 2 when a file cannot be read.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	root := flag.String("root", ".", "repository root holding the compose file and the Dockerfile")
	compose := flag.String("compose", "docker-compose.yml", "compose file, relative to -root")
	dockerfile := flag.String("dockerfile", "Dockerfile", "Dockerfile, relative to -root")
	build := flag.Bool("build-context", false, "also build the image's binaries in a copy of the build context (.dockerignore applied)")
	flag.Parse()

	failed := false
	for _, check := range []struct {
		path string
		run  func(string) ([]string, error)
	}{
		{filepath.Join(*root, *compose), func(path string) ([]string, error) { return checkCompose(context.Background(), path) }},
		{filepath.Join(*root, *dockerfile), checkDockerfile},
	} {
		problems, err := check.run(check.path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "composecheck: %s: %v\n", check.path, err)
			os.Exit(2)
		}
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "composecheck: %s: %s\n", check.path, p)
		}
		if len(problems) > 0 {
			failed = true
			continue
		}
		fmt.Printf("composecheck: %s: ok\n", check.path)
	}
	if failed {
		os.Exit(1)
	}

	if *build {
		skipped, err := buildContext(*root, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "composecheck: build context: %v\n", err)
			os.Exit(1)
		}
		for _, pkg := range skipped {
			fmt.Printf("composecheck: build context: %s does not exist yet, not built\n", pkg)
		}
		fmt.Println("composecheck: build context: the image's binaries build static from the .dockerignore'd context")
	}
}
