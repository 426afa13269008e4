package state

import (
	"bytes"
	"testing"

	"github.com/dstream-io/dstream/microbatch"
)

// FuzzDecodePending: staged changes survive the round trip, and decoding
// what Redis hands back never panics, whatever it holds.
func FuzzDecodePending(f *testing.F) {
	f.Add([]byte{}, "updateStateByKey-1", []byte("10.0.0.1"), []byte{2, 4, 6}, false)
	f.Add([]byte{3, 'o', 'p'}, "op", []byte{}, []byte{}, true)
	f.Fuzz(func(t *testing.T, raw []byte, op string, key, value []byte, del bool) {
		_, _ = decodePending(raw)
		c := microbatch.Change{Op: op, Key: key, Value: value, Delete: del}
		if del {
			c.Value = nil
		}
		got, err := decodePending(encodePending([]microbatch.Change{c, c}))
		if err != nil || len(got) != 2 {
			t.Fatalf("round trip of %+v: %+v, %v", c, got, err)
		}
		for _, g := range got {
			if g.Op != c.Op || !bytes.Equal(g.Key, c.Key) || !bytes.Equal(g.Value, c.Value) || g.Delete != c.Delete {
				t.Fatalf("round trip of %+v: %+v", c, g)
			}
		}
	})
}
