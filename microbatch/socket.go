package microbatch

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// SocketTextStream returns a stream of the lines a TCP server at addr sends,
// one element per line: Spark's socketTextStream(host, port). The receiver
// connects when the job starts and reconnects with backoff when the
// connection drops. Lines live only in this process's memory, so unlike
// Kafka input a socket stream cannot be replayed after a restart: it is
// at-most-once, for demos and tests.
func (j *Job) SocketTextStream(addr string) *Stream[string] {
	return j.Lines(&socketSource{addr: addr, name: "socket-" + addr})
}

// socketSource buffers received lines; offsets count lines since start.
type socketSource struct {
	addr string
	name string

	once   sync.Once
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		lines [][]byte
		base  int64 // offset of lines[0]
	}
}

func (s *socketSource) Topic() string { return s.name }

func (s *socketSource) start() {
	s.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Go(func() { s.receive(ctx) })
	})
}

// Close stops the receiver and waits for it.
func (s *socketSource) Close() error {
	s.start() // so that cancel is set
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *socketSource) receive(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var d net.Dialer
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", s.addr)
		if err == nil {
			backoff = 100 * time.Millisecond
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			sc := bufio.NewScanner(conn)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := append([]byte(nil), sc.Bytes()...)
				s.mu.Lock()
				s.mu.lines = append(s.mu.lines, line)
				s.mu.Unlock()
			}
			stop()
			conn.Close()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *socketSource) Cut(_ context.Context, after []Range) ([]Range, error) {
	s.start()
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.mu.base
	if len(after) > 0 {
		from = after[0].Until
	}
	return []Range{{Topic: s.name, From: from, Until: s.mu.base + int64(len(s.mu.lines))}}, nil
}

func (s *socketSource) Read(_ context.Context, ranges []Range, emit func(Record)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range ranges {
		lo := max(r.From, s.mu.base) - s.mu.base
		hi := min(r.Until-s.mu.base, int64(len(s.mu.lines)))
		for i := lo; i < hi; i++ {
			emit(Record{Offset: s.mu.base + i, Value: s.mu.lines[i]})
		}
		// Lines before the batch are never read again: release them.
		if drop := lo; drop > 0 {
			s.mu.lines = append([][]byte(nil), s.mu.lines[drop:]...)
			s.mu.base += drop
		}
	}
	return nil
}
