package kafkatest

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestClusterIDIsNeverAnOption(t *testing.T) {
	for range 20000 {
		id := clusterID()
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(raw) != 16 {
			t.Fatalf("cluster id %q: %d bytes, %v; want 16 bytes of unpadded base64url", id, len(raw), err)
		}
		if strings.HasPrefix(id, "-") {
			t.Fatalf("cluster id %q starts with '-': the storage tool would read it as an option", id)
		}
	}
}
