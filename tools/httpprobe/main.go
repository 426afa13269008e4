// Command httpprobe is the container health check of the dstream image. The runtime image is distroless (no
// shell, no curl), so Docker and Compose health checks run this static binary instead.
//
//	httpprobe [-timeout 3s] http://127.0.0.1:8080/healthz   exit 0 on a 2xx answer
//	httpprobe [-timeout 3s] -tcp kafka:9092                 exit 0 when a TCP connection opens
//
// It exits 1 with a one-line reason otherwise. Kubernetes does not need it: its probes speak HTTP themselves.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "give up after this long")
	tcp := flag.Bool("tcp", false, "check that a TCP connection to host:port opens instead of an HTTP GET")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: httpprobe [-timeout D] URL | httpprobe [-timeout D] -tcp HOST:PORT")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	check := get
	if *tcp {
		check = dial
	}
	if err := check(ctx, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "httpprobe:", err)
		os.Exit(1)
	}
}

// get succeeds when url answers a GET with a 2xx status.
func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bad url %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// dial succeeds when a TCP connection to addr opens.
func dial(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}
