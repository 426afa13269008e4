package contract

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSettingsMatchCmd compares Settings with the envconfig tags of cmd/dstream, so that a setting added there
// and missing here (or the other way round) fails the packaging checks instead of slipping past them.
func TestSettingsMatchCmd(t *testing.T) {
	files, err := filepath.Glob("../../../cmd/dstream/*.go")
	if err != nil {
		t.Fatal(err)
	}
	tag := regexp.MustCompile("envconfig:\"([A-Z0-9_]+)\"[^`]*`")
	found := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tag.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = strings.Contains(m[0], `secret:"true"`)
		}
	}
	if len(found) == 0 {
		t.Skip("no envconfig tags in cmd/dstream yet")
	}
	for _, name := range sortedKeys(found) {
		secret, ok := Settings[name]
		switch {
		case !ok:
			t.Errorf("cmd/dstream reads %s%s, which contract.Settings lacks", Prefix, name)
		case secret != found[name]:
			t.Errorf("%s%s: secret is %v in contract.Settings, %v in cmd/dstream", Prefix, name, secret, found[name])
		}
	}
	for _, name := range sortedKeys(Settings) {
		if _, ok := found[name]; !ok {
			t.Errorf("contract.Settings has %s%s, which cmd/dstream does not read", Prefix, name)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, test := range []struct {
		env           string
		known, secret bool
	}{
		{"DSTREAM_TOP_N", true, false},
		{"DSTREAM_REDIS_PASSWORD", true, true},
		{"DSTREAM_TOPN", false, false},
		{"TOP_N", false, false},
	} {
		if known, secret := Lookup(test.env); known != test.known || secret != test.secret {
			t.Errorf("Lookup(%s) = %v, %v; want %v, %v", test.env, known, secret, test.known, test.secret)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
