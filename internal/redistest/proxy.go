package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proxy is a TCP proxy in front of a Redis server that cuts the network on
// demand: at once, or when a client sends a given command (so a test can cut
// Redis in the middle of a transaction, between its reads and its writes).
// While cut, it drops every connection and refuses new ones.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		conns map[net.Conn]bool
		until time.Time // cut until then
		// on is the command (upper case) whose arrival cuts the network
		// for onFor, once; "" for none.
		on    string
		onFor time.Duration
		cuts  int
	}
}

// NewProxy starts a proxy on a free loopback port forwarding to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redistest: proxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target}
	p.mu.conns = map[net.Conn]bool{}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's address, for clients.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

// Cut drops every connection and refuses new ones for d.
func (p *Proxy) Cut(d time.Duration) {
	p.mu.Lock()
	p.mu.until = time.Now().Add(d)
	p.mu.cuts++
	p.mu.Unlock()
	p.dropAll()
}

// CutOn arms the proxy to cut the network for d when a client next sends
// command (say "HGET"), before forwarding it.
func (p *Proxy) CutOn(command string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.on, p.mu.onFor = strings.ToUpper(command), d
}

// Cuts counts the cuts so far.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cuts
}

func (p *Proxy) cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Now().Before(p.mu.until)
}

func (p *Proxy) dropAll() {
	p.mu.Lock()
	conns := p.mu.conns
	p.mu.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.mu.until) {
		return false
	}
	p.mu.conns[c] = true
	return true
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.cut() {
			c.Close()
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		client.Close()
		server.Close()
		return
	}
	defer client.Close()
	defer server.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(client, server)
		client.Close()
	})
	p.forward(client, server)
	server.Close()
	wg.Wait()
}

// forward copies the client's commands to the server one at a time,
// cutting the network when the armed command comes.
func (p *Proxy) forward(client, server net.Conn) {
	r := bufio.NewReader(client)
	for {
		cmd, raw, err := readCommand(r)
		if err != nil {
			return
		}
		p.mu.Lock()
		hit := p.mu.on != "" && cmd == p.mu.on
		d := p.mu.onFor
		if hit {
			p.mu.on = ""
		}
		p.mu.Unlock()
		if hit {
			p.Cut(d)
			return
		}
		if _, err := server.Write(raw); err != nil {
			return
		}
	}
}

// readCommand reads one RESP command (an array of bulk strings, or an
// inline command) and returns its name, upper case, and its bytes.
func readCommand(r *bufio.Reader) (string, []byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return "", nil, err
	}
	raw := append([]byte(nil), line...)
	if len(line) == 0 || line[0] != '*' {
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return "", raw, nil
		}
		return strings.ToUpper(fields[0]), raw, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(line[1:])))
	if err != nil {
		return "", nil, errors.New("redistest: proxy: bad array header")
	}
	name := ""
	for i := range n {
		hdr, err := r.ReadBytes('\n')
		if err != nil {
			return "", nil, err
		}
		raw = append(raw, hdr...)
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[1:])))
		if err != nil || hdr[0] != '$' {
			return "", nil, errors.New("redistest: proxy: bad bulk header")
		}
		body := make([]byte, size+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", nil, err
		}
		raw = append(raw, body...)
		if i == 0 {
			name = strings.ToUpper(string(body[:size]))
		}
	}
	return name, raw, nil
}
