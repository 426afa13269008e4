package weblog

import (
	"errors"
	"math/bits"
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
	sp, _, status, err := scan(line, false)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Date: line[:sp[0]], IP: line[sp[0]+1 : sp[1]], Status: status,
		Method: line[sp[2]+1 : sp[3]], URL: line[sp[3]+1 : sp[4]], Seconds: line[sp[4]+1:]}, nil
}

// SourceIP validates line exactly as Parse does and returns its source IP
// as a compact key.
func SourceIP(line string) (IP, error) {
	_, ip, _, err := scan(line, true)
	return ip, err
}

// scan checks a line and returns the positions of the five spaces between
// its six fields, its status code, and with key set the IP key of its
// address.
func scan(line string, key bool) (sp [5]int, ip IP, status int, err error) {
	switch {
	case len(line) == 0:
		return sp, 0, 0, ErrEmpty
	case len(line) > MaxLineBytes:
		return sp, 0, 0, ErrOversized
	}
	// One pass, eight bytes at a time, finds the spaces and notes any
	// non-ASCII byte. The full UTF-8 check runs only for lines with one (log
	// lines are ASCII), and before any other rejection, so a bad encoding is
	// always reported as such.
	const (
		low7   = 0x7f7f7f7f7f7f7f7f
		spaces = 0x2020202020202020
		high   = 0x8080808080808080
	)
	n := 0
	var or uint64
	i := 0
	for ; i+8 <= len(line); i += 8 {
		w := line[i : i+8]
		v := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		or |= v
		// The high bit of every byte of v that is a space, exactly.
		x := v ^ spaces
		for m := ^((x&low7 + low7) | x | low7); m != 0; m &= m - 1 {
			if n == len(sp) {
				return sp, 0, 0, rejectAs(line, ErrFieldCount)
			}
			sp[n] = i + bits.TrailingZeros64(m)/8
			n++
		}
	}
	for ; i < len(line); i++ {
		c := line[i]
		or |= uint64(c)
		if c == ' ' {
			if n == len(sp) {
				return sp, 0, 0, rejectAs(line, ErrFieldCount)
			}
			sp[n] = i
			n++
		}
	}
	if or&high != 0 && !utf8.ValidString(line) {
		return sp, 0, 0, ErrNotUTF8
	}
	if n != len(sp) || sp[0] == 0 || sp[len(sp)-1] == len(line)-1 {
		return sp, 0, 0, ErrFieldCount
	}
	for k := 1; k < len(sp); k++ {
		if sp[k] == sp[k-1]+1 {
			return sp, 0, 0, ErrFieldCount
		}
	}
	addr := line[sp[0]+1 : sp[1]]
	if v, ok := dottedQuad(addr); ok {
		ip = IP(v)
	} else if !validIP(addr) {
		return sp, 0, 0, ErrBadIP
	} else if key {
		ip = intern(addr)
	}
	code := line[sp[1]+1 : sp[2]]
	if len(code) != 3 {
		return sp, 0, 0, ErrBadStatus
	}
	for k := range len(code) {
		c := code[k]
		if c < '0' || c > '9' {
			return sp, 0, 0, ErrBadStatus
		}
		status = status*10 + int(c-'0')
	}
	return sp, ip, status, nil
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
	i := 0
	for part := range 4 {
		if part > 0 {
			if i >= len(s) || s[i] != '.' {
				return 0, false
			}
			i++
		}
		if i >= len(s) || s[i]-'0' > 9 {
			return 0, false
		}
		n := uint32(s[i] - '0')
		i++
		if n != 0 { // a leading 0 is the whole number
			for end := i + 2; i < end && i < len(s) && s[i]-'0' <= 9; i++ {
				n = n*10 + uint32(s[i]-'0')
			}
		}
		if n > 255 {
			return 0, false
		}
		v = v<<8 | n
	}
	return v, i == len(s)
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
