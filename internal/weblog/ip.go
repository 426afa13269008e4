package weblog

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// IP is a source IP address as a small comparable value, for keyed state
// that holds millions of addresses: IPv4 text is kept as its 32 bits, any
// other address text (IPv6) as the number of its interned copy. Two IPs are
// equal exactly when their texts are, and String returns the text the line
// had.
type IP uint64

// internedFlag marks an IP that numbers an interned text.
const internedFlag = 1 << 63

// interned holds the texts of the IPs that are not dotted IPv4, for the
// life of the process. It only grows, as the running totals that key on
// these IPs do; an address is interned once however often it is seen.
var interned struct {
	sync.RWMutex
	ids   map[string]IP
	texts []string
}

// ParseIP returns the IP of text, which must be an address Parse accepts.
func ParseIP(text string) (IP, error) {
	if v, ok := dottedQuad(text); ok {
		return IP(v), nil
	}
	if !validIP(text) {
		return 0, fmt.Errorf("%w: %q", ErrBadIP, text)
	}
	return intern(text), nil
}

// intern returns the IP of a valid address text that is not dotted IPv4.
func intern(text string) IP {
	interned.RLock()
	ip, ok := interned.ids[text]
	interned.RUnlock()
	if ok {
		return ip
	}
	interned.Lock()
	defer interned.Unlock()
	if ip, ok := interned.ids[text]; ok {
		return ip
	}
	if interned.ids == nil {
		interned.ids = make(map[string]IP)
	}
	text = strings.Clone(text) // the caller's text may share a record's memory
	ip = IP(len(interned.texts)) | internedFlag
	interned.ids[text] = ip
	interned.texts = append(interned.texts, text)
	return ip
}

// String returns the address as the line wrote it.
func (ip IP) String() string {
	if ip&internedFlag != 0 {
		interned.RLock()
		defer interned.RUnlock()
		return interned.texts[ip&^internedFlag]
	}
	var b [15]byte
	return string(ip.appendV4(b[:0]))
}

func (ip IP) appendV4(b []byte) []byte {
	for shift := 24; shift >= 0; shift -= 8 {
		b = append(b, octetText[uint8(ip>>shift)]...)
		if shift > 0 {
			b = append(b, '.')
		}
	}
	return b
}

// AppendText appends the address text (checkpoints of releases before the
// binary form stored IPs as it; they are still read).
func (ip IP) AppendText(b []byte) ([]byte, error) {
	if ip&internedFlag != 0 {
		return append(b, ip.String()...), nil
	}
	return ip.appendV4(b), nil
}

// MarshalText returns the address text.
func (ip IP) MarshalText() ([]byte, error) { return ip.AppendText(nil) }

// UnmarshalText sets ip to the address text b.
func (ip *IP) UnmarshalText(b []byte) error {
	// Without a copy: ParseIP keeps only a clone (intern), and a restart
	// decodes millions of keys.
	v, err := ParseIP(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return err
	}
	*ip = v
	return nil
}

// AppendBinary appends the address as checkpoints and the exchange between
// the tasks of a sharded job store it: an IPv4 address as its 4 bytes, any
// other as 0xff, its text and NULs up to 5 bytes at least (a length other
// than 4 tells the two apart). Neither depends on what a process interned.
func (ip IP) AppendBinary(b []byte) ([]byte, error) {
	if ip&internedFlag == 0 {
		return append(b, byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip)), nil
	}
	from := len(b)
	b = append(append(b, 0xff), ip.String()...)
	for len(b)-from < 5 {
		b = append(b, 0)
	}
	return b, nil
}

// UnmarshalBinary sets ip to the address AppendBinary wrote.
func (ip *IP) UnmarshalBinary(b []byte) error {
	switch {
	case len(b) == 4:
		*ip = IP(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
		return nil
	case len(b) >= 5 && b[0] == 0xff:
		return ip.UnmarshalText(bytes.TrimRight(b[1:], "\x00"))
	}
	return fmt.Errorf("%w: %x", ErrBadIP, b)
}

// Compare orders IPs as their texts order, byte by byte: rankings break ties
// by address text, the same on every run whatever was interned first.
func (ip IP) Compare(other IP) int {
	if ip == other {
		return 0
	}
	if (ip|other)&internedFlag == 0 {
		// Dotted quads: the first octet that differs decides, by its
		// text. An octet's text that is a prefix of the other's is
		// followed by '.' or the end, both before any digit: shorter first,
		// as strings.Compare has it. So the octets' ranks in text order,
		// read as one number, order the IPs (a ranking of a window of
		// millions of IPs with equal counts compares every one).
		return cmp.Compare(textOrder(ip), textOrder(other))
	}
	var a, b [48]byte
	at, _ := ip.AppendText(a[:0])
	bt, _ := other.AppendText(b[:0])
	return bytes.Compare(at, bt)
}

// TextKey is a number that orders dotted quads as Compare does, for
// comparing many IPs against one (a ranking's last place); ok is false for
// other addresses, which Compare orders by their text.
func (ip IP) TextKey() (key uint32, ok bool) {
	if ip&internedFlag != 0 {
		return 0, false
	}
	return textOrder(ip), true
}

// textOrder is a dotted quad's octets' ranks in text order (octetRank),
// first octet highest.
func textOrder(ip IP) uint32 {
	return uint32(octetRank[uint8(ip>>24)])<<24 | uint32(octetRank[uint8(ip>>16)])<<16 |
		uint32(octetRank[uint8(ip>>8)])<<8 | uint32(octetRank[uint8(ip)])
}

// octetRank is every octet's place among the octets' texts in text order.
var octetRank = func() (r [256]uint8) {
	octets := make([]int, 256)
	for i := range octets {
		octets[i] = i
	}
	slices.SortFunc(octets, func(a, b int) int { return strings.Compare(octetText[a], octetText[b]) })
	for rank, o := range octets {
		r[o] = uint8(rank)
	}
	return r
}()

// octetText is the decimal text of every octet: checkpoints write every
// changed key's text, and rankings compare IPs as text.
var octetText = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()
