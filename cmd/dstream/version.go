package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and revision are set at link time:
//
//	go build -ldflags "-X main.version=1.2.3 -X main.revision=$(git rev-parse HEAD)" ./cmd/dstream
//
// The Makefile's build and the Dockerfile do so. Left empty (go run, go
// install), buildInfo falls back to what the Go toolchain recorded.
var version, revision string

// build says which dstream this is: in the log at start, /api/status,
// dstream_build_info and `dstream version`.
type build struct {
	Version   string // a release such as 1.2.3, a module version, or "dev"
	Revision  string // the VCS revision, "+dirty" when built from a modified tree; "unknown" if not recorded
	GoVersion string
}

// buildInfo returns the link-time version and revision, else the module
// version and VCS stamp that `go install module@version` and `go build` in
// a checkout record.
func buildInfo() build {
	info, _ := debug.ReadBuildInfo()
	return buildFrom(version, revision, info)
}

// buildFrom is buildInfo with its inputs given; info may be nil.
func buildFrom(version, revision string, info *debug.BuildInfo) build {
	b := build{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if info != nil {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		if b.Revision == "" {
			var rev, dirty string
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "+dirty"
					}
				}
			}
			if rev != "" {
				b.Revision = rev + dirty
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func printVersion(w io.Writer) {
	b := buildInfo()
	fmt.Fprintf(w, "dstream %s\nrevision %s\n%s\n", b.Version, b.Revision, b.GoVersion)
}
