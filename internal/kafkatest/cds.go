package kafkatest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cds is an application class-data-sharing archive of the broker's classes,
// which halves the JVM's startup (about 3 s to 1.5 s here). The first broker
// started from a home without one writes it when it stops cleanly
// (-XX:ArchiveClassesAtExit); later ones map it (-XX:SharedArchiveFile).
// An archive fits one java binary, classpath and set of flags, so its name
// is a hash of those; the JVM ignores an archive that does not fit.
type cds struct {
	path string // the archive, <home>/cds/<hash>.jsa
}

// newCDS returns the archive for java, home and flags, or nil when the
// home's cds directory cannot be written.
func newCDS(java, home string, flags []string) *cds {
	h := sha256.New()
	for _, f := range []string{java, filepath.Join(home, "libs")} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil
		}
		fmt.Fprintf(h, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	fmt.Fprintln(h, strings.Join(flags, " "))
	dir := filepath.Join(home, "cds")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil
	}
	return &cds{path: filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:16]+".jsa")}
}

// flags returns the JVM flags that map the archive if it exists, else the
// ones that write it to a new temporary file, dump, for the caller to keep
// (keep) or drop once the JVM has exited. Writing the archive costs the JVM
// seconds at exit, so while one is being written (by any test binary) others
// run without. A nil cds gives no flags.
func (c *cds) flags(mayDump bool) (flags []string, dump string) {
	if c == nil {
		return nil, ""
	}
	if fileExists(c.path) {
		return []string{"-XX:SharedArchiveFile=" + c.path}, ""
	}
	if !mayDump {
		return nil, ""
	}
	if c.removeStale() > 0 {
		return nil, ""
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), filepath.Base(c.path)+".tmp-*")
	if err != nil {
		return nil, ""
	}
	f.Close()
	return []string{"-XX:ArchiveClassesAtExit=" + f.Name()}, f.Name()
}

// keep renames a complete dump into place; another broker may have done so
// already, which is as good.
func (c *cds) keep(dump string) {
	if fi, err := os.Stat(dump); err == nil && fi.Size() > 0 {
		if os.Rename(dump, c.path) == nil {
			return
		}
	}
	os.Remove(dump)
}

// removeStale removes dumps left by test binaries that died while writing
// them, and returns how many others are being written.
func (c *cds) removeStale() (writing int) {
	dumps, _ := filepath.Glob(c.path + ".tmp-*")
	for _, f := range dumps {
		if fi, err := os.Stat(f); err == nil && time.Since(fi.ModTime()) > 30*time.Minute {
			os.Remove(f)
			continue
		}
		writing++
	}
	return writing
}
