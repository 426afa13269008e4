package main

import (
	"os"
	"path/filepath"
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
