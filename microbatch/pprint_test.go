package microbatch

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPyRepr checks values against what Python 3 prints for repr() of the
// corresponding Python value.
func TestPyRepr(t *testing.T) {
	type point struct {
		X, Y   int
		hidden string
	}
	type single struct{ N int }
	var nilInt *int
	tenth := 0.1 // a variable: 0.1 + 0.2 in constants would be exactly 0.3
	three := 3
	for _, test := range []struct {
		name string
		v    any
		want string
	}{
		{"string", "abc", `'abc'`},
		{"empty string", "", `''`},
		{"single quote", "it's", `"it's"`},
		{"double quote", `say "hi"`, `'say "hi"'`},
		{"both quotes", `it's "x"`, `'it\'s "x"'`},
		{"backslash", `a\b`, `'a\\b'`},
		{"control characters", "tab\t\nnl\r", `'tab\t\nnl\r'`},
		{"NUL and DEL", "\x00\x7f", `'\x00\x7f'`},
		{"non-ASCII printable", "é€日", `'é€日'`},
		{"latin-1 non-printable", "\u0085\u00a0", `'\x85\xa0'`},
		{"BMP non-printable", "\u200b\u2028", `'\u200b\u2028'`},
		{"astral non-printable", "\U000e0001", `'\U000e0001'`},
		{"astral printable", "😀", `'😀'`},
		{"int", 42, `42`},
		{"negative int64", int64(-5), `-5`},
		{"uint8", uint8(7), `7`},
		{"float integral", 1.0, `1.0`},
		{"float zero", 0.0, `0.0`},
		{"float negative zero", math.Copysign(0, -1), `-0.0`},
		{"float fraction", 1.5, `1.5`},
		{"float shortest repr", tenth + 0.2, `0.30000000000000004`},
		{"float small fixed", 0.0001, `0.0001`},
		{"float small exponent", 0.00001, `1e-05`},
		{"float small mantissa", 1.25e-7, `1.25e-07`},
		{"float large fixed", 1e15, `1000000000000000.0`},
		{"float large fixed 2", 9007199254740993.0, `9007199254740992.0`},
		{"float large exponent", 1e16, `1e+16`},
		{"float large mantissa", 1.5e16, `1.5e+16`},
		{"float exponent 3 digits", 1e100, `1e+100`},
		{"float max", math.MaxFloat64, `1.7976931348623157e+308`},
		{"float negative exponent", -2.5e-10, `-2.5e-10`},
		{"float inf", math.Inf(1), `inf`},
		{"float -inf", math.Inf(-1), `-inf`},
		{"float nan", math.NaN(), `nan`},
		{"float32", float32(0.1), `0.1`},
		{"float32 integral", float32(3), `3.0`},
		{"true", true, `True`},
		{"false", false, `False`},
		{"nil", nil, `None`},
		{"nil pointer", nilInt, `None`},
		{"pointer", &three, `3`},
		{"absent optional", Optional[string]{}, `None`},
		{"present optional", Some("x"), `'x'`},
		{"present zero optional", Some(0), `0`},
		{"pair", KV("a", 1), `('a', 1)`},
		{"nested pairs", KV("a", KV(1, KV("x", true))), `('a', (1, ('x', True)))`},
		{"join result with None", KV("ip", KV(Optional[int]{}, Some("PT"))), `('ip', (None, 'PT'))`},
		{"list", []int{1, 2}, `[1, 2]`},
		{"empty list", []string{}, `[]`},
		{"nil list", []string(nil), `[]`},
		{"nested lists", [][]int{{1}, {}, nil}, `[[1], [], []]`},
		{"list of pairs", []Pair[string, []int]{KV("a", []int{1, 3})}, `[('a', [1, 3])]`},
		{"array", [2]string{"a", "b"}, `['a', 'b']`},
		{"bytes", []byte("a'b"), `b"a'b"`},
		{"map in key order", map[string]int{"b": 2, "a": 1, "c": 3}, `{'a': 1, 'b': 2, 'c': 3}`},
		{"map with int keys", map[int]string{10: "x", 2: "y", -1: "z"}, `{-1: 'z', 2: 'y', 10: 'x'}`},
		{"struct as tuple", point{1, 2, "no"}, `(1, 2)`},
		{"struct with one field", single{5}, `(5,)`},
		{"interface", any("s"), `'s'`},
		{"scalar with a text form", code(404), `'E404'`},
		{"pair keyed by a text form", KV(code(7), 1), `('E7', 1)`},
	} {
		t.Run(test.name, func(t *testing.T) {
			if got := repr(test.v); got != test.want {
				t.Errorf("repr(%#v) = %s, want %s", test.v, got, test.want)
			}
		})
	}
}

// TestPyReprMapIsDeterministic guards against map iteration order leaking
// into the output.
func TestPyReprMapIsDeterministic(t *testing.T) {
	m := map[string]int{}
	for i := range 50 {
		m[string(rune('A'+i))] = i
	}
	first := repr(m)
	for range 20 {
		if got := repr(m); got != first {
			t.Fatalf("repr of the same map differs:\n%s\n%s", first, got)
		}
	}
}

func TestPyTime(t *testing.T) {
	for _, test := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2020, 3, 9, 0, 28, 0, 0, time.UTC), "2020-03-09 00:28:00"},
		{time.Date(2020, 3, 9, 0, 28, 0, 1500000, time.UTC), "2020-03-09 00:28:00.001500"},
		{time.Date(2020, 3, 9, 0, 28, 0, 500, time.UTC), "2020-03-09 00:28:00"}, // below a microsecond
	} {
		if got := pyTime(test.t); got != test.want {
			t.Errorf("pyTime(%v) = %q, want %q", test.t, got, test.want)
		}
	}
}

// TestPprint checks Pprint's exact output: PySpark prints a rule of 43
// dashes, the batch time, a rule, at most n elements with print(), "..." when
// the batch had more, and an empty line.
func TestPprint(t *testing.T) {
	const rule = "-------------------------------------------\n"
	if len(rule) != 44 {
		t.Fatalf("the rule has %d dashes, want 43", len(rule)-1)
	}
	header := func(tm string) string { return rule + "Time: " + tm + "\n" + rule }
	for _, test := range []struct {
		name  string
		n     int
		opts  []Option
		build func(j *Job) func(n int)
		want  string
	}{
		{"strings print without quotes, as print() does", 2, nil, func(j *Job) func(int) {
			return words(j, "a b", "it's x y", "").Pprint
		}, header("1970-01-01 00:00:01") + "a\nb\n\n" +
			header("1970-01-01 00:00:02") + "it's\nx\n...\n\n" +
			header("1970-01-01 00:00:03") + "\n"},
		{"pairs print as tuples", 3, nil, func(j *Job) func(int) {
			return pairs(j, "a=1 b=2 c=3 d=4").Pprint
		}, header("1970-01-01 00:00:01") + "('a', 1)\n('b', 2)\n('c', 3)\n...\n\n"},
		{"exactly n elements: no ellipsis", 2, nil, func(j *Job) func(int) {
			return ints(j, []int{1, 2}).Pprint
		}, header("1970-01-01 00:00:01") + "1\n2\n\n"},
		{"n is 0", 0, nil, func(j *Job) func(int) {
			return ints(j, []int{1}, nil).Pprint
		}, header("1970-01-01 00:00:01") + "...\n\n" + header("1970-01-01 00:00:02") + "\n"},
		{"floats, None and lists", 10, nil, func(j *Job) func(int) {
			s := QueueStream(j, [][]Pair[string, Optional[[]float64]]{{KV("a", Some([]float64{1, 1e-5, 1e16})), KV("b", Optional[[]float64]{})}})
			return s.Pprint
		}, header("1970-01-01 00:00:01") + "('a', [1.0, 1e-05, 1e+16])\n('b', None)\n\n"},
		{"strings inside tuples keep their quotes", 10, nil, func(j *Job) func(int) {
			return QueueStream(j, [][]Pair[string, string]{{KV("it's", `"q"`)}}).Pprint
		}, header("1970-01-01 00:00:01") + `("it's", '"q"')` + "\n\n"},
		{"only windows' batch times print", 10, nil, func(j *Job) func(int) {
			return ints(j, []int{1}, []int{2}).Window(2*time.Second, 2*time.Second).Pprint
		}, header("1970-01-01 00:00:02") + "1\n2\n\n"},
		{"batch times in the job's location", 10, []Option{WithLocation(time.FixedZone("X", 3600))}, func(j *Job) func(int) {
			return ints(j, []int{7}).Pprint
		}, header("1970-01-01 01:00:01") + "7\n\n"},
	} {
		t.Run(test.name, func(t *testing.T) {
			var buf bytes.Buffer
			batches := uint64(strings.Count(test.want, "Time: "))
			if test.name == "only windows' batch times print" {
				batches = 2
			}
			j := newTestJob(batches, append([]Option{WithStdout(&buf)}, test.opts...)...)
			test.build(j)(test.n)
			runJob(t, j)
			if got := buf.String(); got != test.want {
				t.Errorf("got\n%s\nwant\n%s", got, test.want)
			}
		})
	}
}

// code is a scalar with a text form, as weblog.IP is: it prints as its text.
type code uint16

func (c code) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "E%d", uint16(c)), nil }

func (c code) AppendText(b []byte) ([]byte, error) {
	return strconv.AppendUint(append(b, 'E'), uint64(c), 10), nil
}

func (c *code) UnmarshalText(b []byte) error {
	_, err := fmt.Sscanf(string(b), "E%d", (*uint16)(c))
	return err
}

// TestTextCodec checks that a type with a text form is checkpointed as its
// text and read back.
func TestTextCodec(t *testing.T) {
	c := DefaultCodec[code]()
	if _, ok := c.(textCodec[code]); !ok {
		t.Fatalf("DefaultCodec of a text type is %T, want textCodec", c)
	}
	b := c.Append([]byte("k:"), 503)
	if string(b) != "k:E503" {
		t.Fatalf("encoded %q, want k:E503", b)
	}
	got, err := c.Decode(b[2:])
	if err != nil || got != 503 {
		t.Fatalf("decoded %v, %v; want 503", got, err)
	}
	if _, err := c.Decode([]byte("x")); err == nil {
		t.Fatal("decoded a malformed text without an error")
	}
	// A table's own codec writes the same bytes without an allocation a
	// value (the shared one boxes each value to call AppendText).
	own := owned(c)
	if b := own.Append(nil, 503); string(b) != "E503" {
		t.Fatalf("owned codec encoded %q, want E503", b)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = own.Append(buf[:0], 1000) }); n != 0 {
		t.Fatalf("owned codec: %.0f allocations a value, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = c.Append(buf[:0], 1000) }); n == 0 {
		t.Fatal("shared codec: no allocation a value; the owned codec's reason is gone")
	}
}
