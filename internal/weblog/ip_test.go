package weblog_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/dstream-io/dstream/internal/weblog"
)

func TestParseIP(t *testing.T) {
	tests := []struct {
		text  string
		valid bool
	}{
		{"37.139.9.11", true},
		{"0.0.0.0", true},
		{"255.255.255.255", true},
		{"10.0.0.1", true},
		{"9.255.255.255", true},
		{"2001:db8::1", true},
		{"2001:DB8::1", true},
		{"::1", true},
		{"::", true},
		{"::ffff:1.2.3.4", true},
		{"fe80::1%eth0", true},
		{"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%a-zone-that-is-longer-than-the-buffer", true},
		{"01.2.3.4", false},
		{"1.02.3.4", false},
		{"00.0.0.0", false},
		{"1.2.3", false},
		{"1.2.3.256", false},
		{"1.2.3.1000", false},
		{"1..2.3", false},
		{"1.2.3.4.", false},
		{".1.2.3.4", false},
		{"1.2.3.4.5", false},
		{"1.2.3.4%eth0", false},
		{" 1.2.3.4", false},
		{"", false},
		{"abc", false},
		{"2001:db8::1::2", false},
		{"fe80::1%", false},
	}
	seen := map[weblog.IP]string{}
	for _, test := range tests {
		ip, err := weblog.ParseIP(test.text)
		if !test.valid {
			if !errors.Is(err, weblog.ErrBadIP) {
				t.Errorf("ParseIP(%q) = %v, %v; want an error wrapping ErrBadIP", test.text, ip, err)
			}
			u := weblog.IP(42)
			if err := u.UnmarshalText([]byte(test.text)); !errors.Is(err, weblog.ErrBadIP) || u != 42 {
				t.Errorf("UnmarshalText(%q) = %v and set %v; want ErrBadIP and no change", test.text, err, u)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseIP(%q): %v", test.text, err)
			continue
		}
		if got := ip.String(); got != test.text {
			t.Errorf("ParseIP(%q).String() = %q", test.text, got)
		}
		if got, err := ip.MarshalText(); err != nil || string(got) != test.text {
			t.Errorf("ParseIP(%q).MarshalText() = %q, %v", test.text, got, err)
		}
		if got, err := ip.AppendText([]byte("ip=")); err != nil || string(got) != "ip="+test.text {
			t.Errorf("ParseIP(%q).AppendText(\"ip=\") = %q, %v", test.text, got, err)
		}
		var u weblog.IP
		if err := u.UnmarshalText([]byte(test.text)); err != nil || u != ip {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", test.text, u, err, ip)
		}
		if again, _ := weblog.ParseIP(test.text); again != ip {
			t.Errorf("ParseIP(%q) twice gives %v and %v", test.text, ip, again)
		}
		if ip.Compare(ip) != 0 {
			t.Errorf("ParseIP(%q) does not compare equal to itself", test.text)
		}
		if other, ok := seen[ip]; ok {
			t.Errorf("ParseIP(%q) == ParseIP(%q): different texts, one IP", test.text, other)
		}
		seen[ip] = test.text
	}
}

// TestIPDoesNotKeepTheLine checks that an interned address does not share
// the memory of the line it came from, which the engine reuses.
func TestIPDoesNotKeepTheLine(t *testing.T) {
	const text = "2001:db8::beef:7"
	buf := []byte("d " + text + " 200 GET / 0.1")
	line := unsafe.String(&buf[0], len(buf))
	ip, err := weblog.SourceIP(line)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'x'
	}
	if got := ip.String(); got != text {
		t.Errorf("after the line's memory was overwritten, the IP reads %q; want %q", got, text)
	}
}

func TestParseIPConcurrently(t *testing.T) {
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = "2001:db8:c0::" + strconv.FormatUint(uint64(i), 16)
	}
	got := make([][]weblog.IP, 8)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			got[g] = make([]weblog.IP, len(texts))
			for i := range texts {
				j := (i + g*7) % len(texts) // each goroutine starts elsewhere
				ip, err := weblog.ParseIP(texts[j])
				if err != nil {
					t.Error(err)
					return
				}
				if ip.String() != texts[j] {
					t.Errorf("ParseIP(%q).String() = %q", texts[j], ip)
				}
				got[g][j] = ip
			}
		})
	}
	wg.Wait()
	for g := range got[1:] {
		if !slices.Equal(got[0], got[g+1]) {
			t.Fatalf("goroutines 0 and %d got different IPs for the same texts", g+1)
		}
	}
}

func TestSourceIPAgreesWithParse(t *testing.T) {
	for _, test := range []struct {
		line string
		err  error
	}{
		{"2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026", nil},
		{"2016-12-06T08:58:35.318+0000 2001:db8::1 200 GET / 0.1", nil},
		{"d 2001:DB8::1 200 GET / 0.1", nil},
		{"d ::ffff:1.2.3.4 200 GET / 0.1", nil},
		{"d fe80::1%eth0 200 GET / 0.1", nil},
		{"d 0.0.0.0 200 GET / 0.1", nil},
		{"d 255.255.255.255 999 GET / 0.1", nil},
		{"d 1.2.3.4 200 GET /\u00e9 0.1", nil},
		{"", weblog.ErrEmpty},
		{"a b c", weblog.ErrFieldCount},
		{"d 1.2.3.4 200 GET /x 0.1 extra", weblog.ErrFieldCount},
		{"d  1.2.3.4 200 GET /x", weblog.ErrFieldCount},
		{"d 1.2.3.4 200 GET /x 0.1 ", weblog.ErrFieldCount},
		{"d 1.2.3.400 200 GET /x 0.1", weblog.ErrBadIP},
		{"d 1.2.3 200 GET /x 0.1", weblog.ErrBadIP},
		{"d 01.2.3.4 200 GET /x 0.1", weblog.ErrBadIP},
		{"d not-an-ip 200 GET /x 0.1", weblog.ErrBadIP},
		{"d 1.2.3.4%eth0 200 GET /x 0.1", weblog.ErrBadIP},
		{"d 1.2.3.4 2x0 GET /x 0.1", weblog.ErrBadStatus},
		{"d 1.2.3.4 2000 GET /x 0.1", weblog.ErrBadStatus},
		{"d 1.2.3.4 200 GET /\xff 0.1", weblog.ErrNotUTF8},
		{"d 1.2.3.4 200 GET /\xff 0.1 extra", weblog.ErrNotUTF8},
		{"d bad-ip 200 GET /\xff 0.1", weblog.ErrNotUTF8},
		{"d fe80::1%\xff 200 GET / 0.1", weblog.ErrNotUTF8},
		{"d 1.2.3.4 200 GET /" + strings.Repeat("a", weblog.MaxLineBytes) + " 0.1", weblog.ErrOversized},
	} {
		e, perr := weblog.Parse(test.line)
		ip, serr := weblog.SourceIP(test.line)
		if perr != test.err || serr != test.err {
			t.Errorf("line %.40q: Parse error %v, SourceIP error %v; want %v", test.line, perr, serr, test.err)
			continue
		}
		if test.err != nil {
			continue
		}
		if ip.String() != e.IP {
			t.Errorf("line %.40q: SourceIP gives %q, Parse %q", test.line, ip, e.IP)
		}
		if want, _ := weblog.ParseIP(e.IP); ip != want {
			t.Errorf("line %.40q: SourceIP gives %v, ParseIP(%q) %v", test.line, ip, e.IP, want)
		}
	}
}

func FuzzSourceIP(f *testing.F) {
	f.Add("2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026", "2001:db8::1")
	f.Add("d 2001:db8::1 200 GET / 0", "37.139.9.11")
	f.Add("d 9.0.0.1 200 GET / 0", "10.0.0.1")
	f.Add("d fe80::1%eth0 200 GET / 0", "fe80::1%eth1")
	f.Add("d ::ffff:1.2.3.4 200 GET / 0", "1.2.3.4")
	f.Add("d 1.2.3.4 200 GET /\xff 0", "")
	f.Add("", "01.2.3.4")
	f.Fuzz(func(t *testing.T, line, addr string) {
		e, perr := weblog.Parse(line)
		a, serr := weblog.SourceIP(line)
		if !errors.Is(perr, serr) || !errors.Is(serr, perr) {
			t.Fatalf("line %q: Parse error %v, SourceIP error %v", line, perr, serr)
		}
		b, berr := weblog.ParseIP(addr)
		if berr != nil && !errors.Is(berr, weblog.ErrBadIP) {
			t.Fatalf("ParseIP(%q): %v does not wrap ErrBadIP", addr, berr)
		}
		// An address a line may hold is one ParseIP takes (ParseIP also
		// takes zones with spaces or invalid UTF-8, no line's field).
		if !strings.Contains(addr, " ") && utf8.ValidString(addr) && len(addr) < weblog.MaxLineBytes-32 {
			_, err := weblog.Parse("d " + addr + " 200 GET / 0")
			if (err == nil) != (berr == nil) {
				t.Fatalf("address %q: ParseIP error %v, Parse of a line holding it %v", addr, berr, err)
			}
		}
		if berr == nil {
			if b.String() != addr {
				t.Fatalf("ParseIP(%q).String() = %q", addr, b)
			}
			if text, err := b.MarshalText(); err != nil || string(text) != addr {
				t.Fatalf("ParseIP(%q).MarshalText() = %q, %v", addr, text, err)
			}
		}
		if perr != nil {
			return
		}
		if a.String() != e.IP {
			t.Fatalf("line %q: SourceIP gives %q, Parse %q", line, a, e.IP)
		}
		if berr != nil {
			return
		}
		as, bs := a.String(), b.String()
		if got, want := a.Compare(b), strings.Compare(as, bs); got != want || -b.Compare(a) != want {
			t.Fatalf("%q.Compare(%q) = %d and back %d; want %d", as, bs, got, b.Compare(a), want)
		}
		if (a.Compare(b) == 0) != (a == b) || (a == b) != (as == bs) {
			t.Fatalf("%q (%d) and %q (%d): Compare %d", as, uint64(a), bs, uint64(b), a.Compare(b))
		}
	})
}

func TestCompareOrdersAsText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Numeric and text order differ here: 9.x sorts after 10.x as text.
	texts := []string{"9.0.0.0", "10.0.0.0", "100.0.0.0", "1.0.0.0", "::1", "::", "2001:DB8::1", "2001:db8::1"}
	for range 600 {
		switch rng.IntN(5) {
		case 0, 1:
			texts = append(texts, netip.AddrFrom4([4]byte{byte(rng.UintN(256)), byte(rng.UintN(256)),
				byte(rng.UintN(256)), byte(rng.UintN(256))}).String())
		case 2:
			var a [16]byte
			for i := range a {
				if rng.IntN(3) > 0 { // runs of zeros get the :: form
					a[i] = byte(rng.UintN(256))
				}
			}
			texts = append(texts, netip.AddrFrom16(a).String())
		case 3:
			a := netip.AddrFrom4([4]byte{byte(rng.UintN(256)), 0, 0, byte(rng.UintN(256))})
			texts = append(texts, "::ffff:"+a.String(), strings.ToUpper("fe80::"+strconv.FormatUint(rng.Uint64N(1<<16), 16)))
		case 4:
			texts = append(texts, texts[rng.IntN(len(texts))]) // a repeat
		}
	}
	ips := make([]weblog.IP, len(texts))
	for i, text := range texts {
		ip, err := weblog.ParseIP(text)
		if err != nil {
			t.Fatalf("ParseIP(%q): %v", text, err)
		}
		ips[i] = ip
	}
	for i := range 200 {
		for j := range 200 {
			if got, want := ips[i].Compare(ips[j]), strings.Compare(texts[i], texts[j]); got != want {
				t.Fatalf("%q.Compare(%q) = %d; want %d", texts[i], texts[j], got, want)
			}
		}
	}
	slices.SortFunc(ips, weblog.IP.Compare)
	slices.SortFunc(texts, strings.Compare)
	for i := range ips {
		if ips[i].String() != texts[i] {
			t.Fatalf("sorted by Compare, IP %d is %q; sorted as text, %q", i, ips[i], texts[i])
		}
	}
}

func ExampleIP() {
	a, _ := weblog.ParseIP("37.139.9.11")
	b, _ := weblog.ParseIP("2001:db8::1")
	c, _ := weblog.ParseIP("37.139.9.11")
	fmt.Println(a, b, a == c)
	// IPs order as their texts do: "3" sorts after "2".
	fmt.Println(a.Compare(b), b.Compare(a), a.Compare(c))
	_, err := weblog.ParseIP("01.2.3.4")
	fmt.Println(err)
	// Output:
	// 37.139.9.11 2001:db8::1 true
	// 1 -1 0
	// source IP is not an IP address: "01.2.3.4"
}

func BenchmarkSourceIP(b *testing.B) {
	line := "2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := weblog.SourceIP(line); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIPBinaryRoundTrip checks the exchange's form of IPs: 4 bytes for
// IPv4, the text for others, and back to the same IP.
func TestIPBinaryRoundTrip(t *testing.T) {
	for _, text := range []string{"0.0.0.0", "37.139.9.11", "255.255.255.255", "2001:db8::1", "::1"} {
		ip, err := weblog.ParseIP(text)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ip.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var back weblog.IP
		if err := back.UnmarshalBinary(b); err != nil || back != ip || back.String() != text {
			t.Errorf("%s: %x decodes to %v (%v)", text, b, back, err)
		}
		if v4 := !strings.Contains(text, ":"); v4 != (len(b) == 4) {
			t.Errorf("%s: %d bytes", text, len(b))
		}
	}
	var ip weblog.IP
	if err := ip.UnmarshalBinary([]byte{1, 2}); err == nil {
		t.Error("2 bytes decoded as an IP")
	}
}

// TestTextKeyOrdersAsCompare checks the rankings' shortcut: dotted quads'
// text keys order as Compare does (so as their texts), other addresses have
// none.
func TestTextKeyOrdersAsCompare(t *testing.T) {
	texts := []string{"0.0.0.0", "1.2.3.4", "10.0.0.1", "9.255.255.255", "100.1.1.1", "37.139.9.11", "37.139.90.1", "255.255.255.255", "2.0.0.0"}
	for _, a := range texts {
		for _, b := range texts {
			ia, _ := weblog.ParseIP(a)
			ib, _ := weblog.ParseIP(b)
			ka, okA := ia.TextKey()
			kb, okB := ib.TextKey()
			if !okA || !okB {
				t.Fatalf("%s, %s: no text key", a, b)
			}
			if got, want := cmp.Compare(ka, kb), strings.Compare(a, b); got != want {
				t.Errorf("%s against %s: text keys compare %d, texts %d", a, b, got, want)
			}
		}
	}
	v6, _ := weblog.ParseIP("2001:db8::1")
	if _, ok := v6.TextKey(); ok {
		t.Error("an IPv6 address has a text key")
	}
}
