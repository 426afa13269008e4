package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// jvmOpens are the module openings Spark and Flink need on Java 17 when
// they run from a plain `java -cp` rather than from their launch scripts,
// which add the same (Spark's JavaModuleOptions, Flink's env.java.opts.all):
// both reach into java.base by reflection (Kryo, Netty, off-heap memory).
var jvmOpens = []string{
	"-XX:+IgnoreUnrecognizedVMOptions",
	"--add-opens=java.base/java.lang=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
	"--add-opens=java.base/java.io=ALL-UNNAMED",
	"--add-opens=java.base/java.net=ALL-UNNAMED",
	"--add-opens=java.base/java.nio=ALL-UNNAMED",
	"--add-opens=java.base/java.text=ALL-UNNAMED",
	"--add-opens=java.base/java.time=ALL-UNNAMED",
	"--add-opens=java.base/java.util=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
	"--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
	"--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.cs=ALL-UNNAMED",
	"--add-opens=java.base/sun.security.action=ALL-UNNAMED",
	"--add-opens=java.base/sun.util.calendar=ALL-UNNAMED",
	"--add-exports=java.base/sun.net.util=ALL-UNNAMED",
	"-Djdk.reflect.useDirectMethodHandle=false",
	"-Dio.netty.tryReflectionSetAccessible=true",
}

// peerClasspath is the classpath of a Maven-built peer in .cache/bench/name
// (bench/setup-peers): its classes and its runtime jars.
func (b *bench) peerClasspath(name string) string {
	dir := filepath.Join(b.root, ".cache", "bench", name)
	return filepath.Join(dir, "classes") + string(os.PathListSeparator) + filepath.Join(dir, "lib", "*")
}

// jfrFlags record a JVM peer with Java Flight Recorder's default settings
// (method samples every 20 ms, about 1% of its CPU) into the run's scratch
// directory, written when the JVM exits; jfrHotMethods summarises it.
func (b *bench) jfrFlags(name string) []string {
	return []string{"-XX:StartFlightRecording=filename=" + b.jfrPath(name) + ",settings=default"}
}

func (b *bench) jfrPath(name string) string { return filepath.Join(b.dir, name+".jfr") }

// jfrTool is a jfr command with `jfr view` (JDK 21 and later), which reads
// the recordings of older JVMs too.
func jfrTool() string {
	matches, _ := filepath.Glob("/usr/lib/jvm/temurin-2*/bin/jfr")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return "jfr"
}

// peerProfile is where a JVM peer's CPU went: the methods its threads were
// sampled in most, from its flight recording.
type peerProfile struct {
	name, text string
}

// profilePeer adds the hot methods of a peer's flight recording to the
// report; a recording that cannot be read is noted, not fatal.
func (b *bench) profilePeer(ctx context.Context, name string) {
	out, err := exec.CommandContext(ctx, jfrTool(), "view", "--width", "150", "hot-methods", b.jfrPath(name)).CombinedOutput()
	if err != nil {
		b.notes = append(b.notes, fmt.Sprintf("%s: no profile (%v: %s)", name, err, strings.TrimSpace(string(out))))
		return
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	b.peerProfiles = append(b.peerProfiles, peerProfile{name, strings.Join(lines[:min(len(lines), 30)], "\n")})
}
