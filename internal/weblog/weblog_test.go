package weblog

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	for _, test := range []struct {
		line string
		ip   string
		err  error
	}{
		{"2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026", "37.139.9.11", nil},
		{"2016-12-06T08:58:35.318+0000 2001:db8::1 200 GET / 0.1", "2001:db8::1", nil},
		{"", "", ErrEmpty},
		{"a b c", "", ErrFieldCount},
		{"d 1.2.3.4 200 GET /x 0.1 extra", "", ErrFieldCount},
		{"d  1.2.3.4 200 GET /x", "", ErrFieldCount},
		{"d 1.2.3.400 200 GET /x 0.1", "", ErrBadIP},
		{"d 1.2.3 200 GET /x 0.1", "", ErrBadIP},
		{"d 01.2.3.4 200 GET /x 0.1", "", ErrBadIP},
		{"d not-an-ip 200 GET /x 0.1", "", ErrBadIP},
		{"d 1.2.3.4 2x0 GET /x 0.1", "", ErrBadStatus},
		{"d 1.2.3.4 200 GET /\xff 0.1", "", ErrNotUTF8},
		{"d 1.2.3.4 200 GET /" + strings.Repeat("a", MaxLineBytes) + " 0.1", "", ErrOversized},
	} {
		e, err := Parse(test.line)
		if !errors.Is(err, test.err) || e.IP != test.ip {
			t.Errorf("Parse(%.40q) = %q, %v; want %q, %v", test.line, e.IP, err, test.ip, test.err)
		}
	}
}

func TestGeneratorIsDeterministicAndParses(t *testing.T) {
	a, b := NewGenerator(7, 100), NewGenerator(7, 100)
	counts := map[string]int{}
	for range 10000 {
		la, lb := a.Line(), b.Line()
		if la != lb {
			t.Fatalf("same seed, different lines: %q vs %q", la, lb)
		}
		e, err := Parse(la)
		if err != nil {
			t.Fatalf("generated line %q: %v", la, err)
		}
		counts[e.IP]++
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if top < 1000 {
		t.Errorf("most popular IP has %d of 10000 requests: the popularity is not skewed", top)
	}
}

// referenceParse is the line format written plainly, to check the fast
// scanner against: any invalid UTF-8 first, then six non-empty fields, a
// netip address and a three-digit status.
func referenceParse(line string) (Entry, error) {
	switch {
	case line == "":
		return Entry{}, ErrEmpty
	case len(line) > MaxLineBytes:
		return Entry{}, ErrOversized
	case !utf8.ValidString(line):
		return Entry{}, ErrNotUTF8
	}
	f := strings.Split(line, " ")
	if len(f) != 6 || slices.Contains(f, "") {
		return Entry{}, ErrFieldCount
	}
	if _, err := netip.ParseAddr(f[1]); err != nil {
		return Entry{}, ErrBadIP
	}
	status, err := strconv.Atoi(f[2])
	if len(f[2]) != 3 || err != nil || f[2][0] == '-' || f[2][0] == '+' {
		return Entry{}, ErrBadStatus
	}
	return Entry{Date: f[0], IP: f[1], Status: status, Method: f[3], URL: f[4], Seconds: f[5]}, nil
}

func FuzzParse(f *testing.F) {
	f.Add("2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026")
	f.Add("d 1.2.3.4 200 GET / 0")
	f.Add("")
	f.Add("d 1.2.3.4 200 GET / 0 ")
	f.Add("d\xff 1.2.3.4 200 GET / 0 x")
	f.Add("a b c d e f g h i j k l")
	f.Add("d 1.2.3.4 -20 GET / 0")
	f.Fuzz(func(t *testing.T, line string) {
		e, err := Parse(line)
		want, wantErr := referenceParse(line)
		if err != wantErr || e != want {
			t.Fatalf("Parse(%q) = %+v, %v; the reference gives %+v, %v", line, e, err, want, wantErr)
		}
		if err != nil {
			return
		}
		if e.IP == "" || !validIP(e.IP) || !strings.Contains(line, " "+e.IP+" ") {
			t.Fatalf("accepted %q with IP %q", line, e.IP)
		}
		if e.Status < 0 || e.Status > 999 {
			t.Fatalf("status %d", e.Status)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	line := "2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(line); err != nil {
			b.Fatal(err)
		}
	}
}
