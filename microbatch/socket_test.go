package microbatch_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// TestSocketTextStream counts words of lines a TCP server sends, like the
// lecture's socketTextStream("logsender", 7777), with a real socket.
func TestSocketTextStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := []string{"a b", "b c", "c c"}
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(conn, strings.Join(lines, "\n")+"\n")
		// Keep the connection open until the test ends.
		buf := make([]byte, 1)
		conn.Read(buf)
	}()

	job := microbatch.NewJob(20 * time.Millisecond)
	words := microbatch.FlatMap(job.SocketTextStream(ln.Addr().String()), strings.Fields)
	counts := microbatch.CountByValue(words)
	got := map[string]int64{}
	total := 0
	counts.ForeachBatch(func(_ context.Context, _ microbatch.BatchInfo, batch []microbatch.Pair[string, int64]) error {
		for _, kv := range batch {
			got[kv.Key] += kv.Value
			total += int(kv.Value)
		}
		if total >= 6 {
			job.Stop(true)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := job.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a": 1, "b": 2, "c": 3}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("count of %q = %d, want %d (all: %v)", k, got[k], want[k], got)
		}
	}
}
