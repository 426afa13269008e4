package weblog

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxLineBytes bounds a line; longer ones are rejected as oversized.
const MaxLineBytes = 8 << 10

// Rejection reasons, as written to dead-letter headers.
var (
	ErrEmpty      = errors.New("empty line")
	ErrOversized  = errors.New("line longer than 8 KiB")
	ErrNotUTF8    = errors.New("line is not valid UTF-8")
	ErrFieldCount = errors.New("line does not have 6 space-separated fields")
	ErrBadIP      = errors.New("source IP is not an IP address")
	ErrBadStatus  = errors.New("status is not a 3-digit code")
)

// Entry is a parsed line. Its strings share the line's memory.
type Entry struct {
	Date    string
	IP      string
	Status  int
	Method  string
	URL     string
	Seconds string
}

// Parse parses one line.
func Parse(line string) (Entry, error) {
	f, _, status, err := split(line, false)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Date: f[0], IP: f[1], Status: status, Method: f[3], URL: f[4], Seconds: f[5]}, nil
}

// SourceIP validates line exactly as Parse does and returns its source IP
// as a compact key.
func SourceIP(line string) (IP, error) {
	_, ip, _, err := split(line, true)
	return ip, err
}

// split checks a line and returns its six fields and its status code, and
// with key set the IP key of its address.
func split(line string, key bool) (f [6]string, ip IP, status int, err error) {
	switch {
	case len(line) == 0:
		return f, 0, 0, ErrEmpty
	case len(line) > MaxLineBytes:
		return f, 0, 0, ErrOversized
	}
	// One pass splits the fields and notes any non-ASCII byte; the full
	// UTF-8 check runs only for such lines (log lines are ASCII) and before
	// any other rejection, so a bad encoding is always reported as such.
	n, start := 0, 0
	var high byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		high |= c
		if c != ' ' {
			continue
		}
		if n == len(f)-1 {
			return f, 0, 0, rejectAs(line, ErrFieldCount)
		}
		f[n] = line[start:i]
		n++
		start = i + 1
	}
	f[n] = line[start:]
	n++
	if high >= utf8.RuneSelf && !utf8.ValidString(line) {
		return f, 0, 0, ErrNotUTF8
	}
	if n != len(f) {
		return f, 0, 0, ErrFieldCount
	}
	for _, field := range f {
		if field == "" {
			return f, 0, 0, ErrFieldCount
		}
	}
	if v, ok := dottedQuad(f[1]); ok {
		ip = IP(v)
	} else if !validIP(f[1]) {
		return f, 0, 0, ErrBadIP
	} else if key {
		ip = intern(f[1])
	}
	if len(f[2]) != 3 {
		return f, 0, 0, ErrBadStatus
	}
	for _, c := range []byte(f[2]) {
		if c < '0' || c > '9' {
			return f, 0, 0, ErrBadStatus
		}
		status = status*10 + int(c-'0')
	}
	return f, ip, status, nil
}

// rejectAs returns err, or ErrNotUTF8 when the line is not valid UTF-8.
func rejectAs(line string, err error) error {
	if !utf8.ValidString(line) {
		return ErrNotUTF8
	}
	return err
}

// validIP accepts dotted IPv4 quickly and anything else netip parses.
func validIP(s string) bool {
	if _, ok := dottedQuad(s); ok {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// dottedQuad parses IPv4 text in its canonical form, the only one netip
// accepts: four decimal numbers up to 255 without leading zeros.
func dottedQuad(s string) (uint32, bool) {
	var v uint32
	parts, val, digits := 0, uint32(0), 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			val = val*10 + uint32(c-'0')
			digits++
			if digits > 3 || val > 255 || (digits == 2 && val < 10) {
				return 0, false
			}
		case c == '.' && digits > 0 && parts < 3:
			v = v<<8 | val
			parts++
			val, digits = 0, 0
		default:
			return 0, false
		}
	}
	if parts != 3 || digits == 0 {
		return 0, false
	}
	return v<<8 | val, true
}

// Generator writes deterministic log lines.
type Generator struct {
	rng   *rand.Rand
	zipf  *rand.Zipf
	ips   []string
	start time.Time
	n     int64
}

// NewGenerator returns a generator over distinct IPs whose popularity follows
// a Zipf law, seeded for reproducible output.
func NewGenerator(seed uint64, distinct int) *Generator {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ips := make([]string, max(1, distinct))
	for i := range ips {
		ips[i] = strconv.Itoa(1+rng.IntN(223)) + "." + strconv.Itoa(rng.IntN(256)) + "." +
			strconv.Itoa(rng.IntN(256)) + "." + strconv.Itoa(1+rng.IntN(254))
	}
	return &Generator{
		rng:   rng,
		zipf:  rand.NewZipf(rng, 1.2, 1, uint64(len(ips)-1)),
		ips:   ips,
		start: time.Date(2016, 12, 6, 8, 58, 35, 318e6, time.UTC),
	}
}

var (
	statuses = []string{"200", "200", "200", "200", "304", "404", "500"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT"}
)

// Append appends the next line (without newline) to dst.
func (g *Generator) Append(dst []byte) []byte {
	ts := g.start.Add(time.Duration(g.n) * time.Millisecond)
	g.n++
	dst = ts.AppendFormat(dst, "2006-01-02T15:04:05.000-0700")
	dst = append(dst, ' ')
	dst = append(dst, g.ips[g.zipf.Uint64()]...)
	dst = append(dst, ' ')
	dst = append(dst, statuses[g.rng.IntN(len(statuses))]...)
	dst = append(dst, ' ')
	dst = append(dst, methods[g.rng.IntN(len(methods))]...)
	dst = append(dst, " /codemove/"...)
	for range 12 {
		dst = append(dst, byte('A'+g.rng.IntN(26)))
	}
	dst = append(dst, ' ')
	dst = strconv.AppendFloat(dst, float64(g.rng.IntN(1000))/1000, 'f', 3, 64)
	return dst
}

// Line returns the next line.
func (g *Generator) Line() string { return string(g.Append(nil)) }
