package microbatch_test

import (
	"slices"
	"testing"

	"github.com/dstream-io/dstream/microbatch"
)

func TestParseOffsetsHeader(t *testing.T) {
	for _, test := range []struct {
		header string
		want   []microbatch.Range // nil with ok false: an error
		ok     bool
	}{
		{"", nil, true},
		{"0:0-5", []microbatch.Range{{Topic: "t", Partition: 0, From: 0, Until: 5}}, true},
		{"0:3-3,1:7-12,3:0-9223372036854775807", []microbatch.Range{
			{Topic: "t", Partition: 0, From: 3, Until: 3},
			{Topic: "t", Partition: 1, From: 7, Until: 12},
			{Topic: "t", Partition: 3, From: 0, Until: 9223372036854775807},
		}, true},
		{"0:5-3", nil, false},          // backwards
		{"0:0-5,", nil, false},         // trailing comma
		{"0-5", nil, false},            // no partition
		{"0:5", nil, false},            // no until
		{"x:0-5", nil, false},          // not a number
		{"0:0-x", nil, false},          // not a number
		{"2147483648:0-1", nil, false}, // partition beyond int32
		{"0:0-9223372036854775808", nil, false},
		{" 0:0-5", nil, false},
	} {
		got, err := microbatch.ParseOffsetsHeader("t", test.header)
		if (err == nil) != test.ok || !slices.Equal(got, test.want) {
			t.Errorf("ParseOffsetsHeader(%q) = %v, %v; want %v, ok %v", test.header, got, err, test.want, test.ok)
		}
	}
}

// FuzzParseOffsetsHeader: any header either fails to parse or parses to
// ranges that render to a header parsing to the same ranges, each running
// forwards, without a panic.
func FuzzParseOffsetsHeader(f *testing.F) {
	for _, seed := range []string{"", "0:0-5", "0:3-3,1:7-12,3:0-9223372036854775807", "0:5-3", "-1:0-1",
		"+1:0-1", "0:0-5,", ",", ":-", "1:-1-2", "0:1--1", "01:002-3"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		ranges, err := microbatch.ParseOffsetsHeader("logs", header)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.Topic != "logs" || r.From > r.Until {
				t.Fatalf("ParseOffsetsHeader(%q) = %v: a range of another topic or backwards", header, ranges)
			}
		}
		again, err := microbatch.ParseOffsetsHeader("logs", microbatch.Plan{Ranges: ranges}.OffsetsHeader())
		if err != nil || !slices.Equal(again, ranges) {
			t.Fatalf("ParseOffsetsHeader(%q) = %v renders as %q, which parses to %v, %v",
				header, ranges, microbatch.Plan{Ranges: ranges}.OffsetsHeader(), again, err)
		}
	})
}

// FuzzOffsetsHeaderRoundTrip: the header of any plan's ranges parses back
// to them.
func FuzzOffsetsHeaderRoundTrip(f *testing.F) {
	f.Add(int32(0), int64(0), int64(5), int32(3), int64(9), int64(9))
	f.Add(int32(2147483647), int64(9223372036854775806), int64(9223372036854775807), int32(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, p1 int32, from1, until1 int64, p2 int32, from2, until2 int64) {
		if min(p1, p2) < 0 || min(from1, until1, from2, until2) < 0 {
			t.Skip("partitions and offsets are not negative")
		}
		ranges := []microbatch.Range{
			{Topic: "logs", Partition: p1, From: min(from1, until1), Until: max(from1, until1)},
			{Topic: "logs", Partition: p2, From: min(from2, until2), Until: max(from2, until2)},
		}
		h := microbatch.Plan{Ranges: ranges}.OffsetsHeader()
		got, err := microbatch.ParseOffsetsHeader("logs", h)
		if err != nil || !slices.Equal(got, ranges) {
			t.Fatalf("%v renders as %q, which parses to %v, %v", ranges, h, got, err)
		}
	})
}
