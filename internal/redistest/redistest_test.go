package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
)

func TestMain(m *testing.M) {
	os.Exit(redistest.Main(m, redistest.Options{}))
}

func TestSetGet(t *testing.T) {
	s := redistest.Shared(t)
	ctx := testContext(t)
	cl := client(t, s.ClientOptions())
	if err := cl.Set(ctx, "setget", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := get(ctx, t, cl, "setget"); got != "v" {
		t.Fatalf("GET setget = %q, want v", got)
	}
}

// TestRestart checks what survives a restart: with AOF on, every
// acknowledged write, after a clean stop and after a crash; without it
// (save ""), nothing.
func TestRestart(t *testing.T) {
	for _, test := range []struct {
		name string
		aof  bool
		stop func(*redistest.Server) error
		want string // "" for a lost key
	}{
		{"aof stop", true, (*redistest.Server).Stop, "v"},
		{"aof kill", true, (*redistest.Server).Kill, "v"},
		{"aof running", true, func(*redistest.Server) error { return nil }, "v"},
		{"no aof stop", false, (*redistest.Server).Stop, ""},
	} {
		t.Run(test.name, func(t *testing.T) {
			s := redistest.Require(t, redistest.Options{AOF: test.aof})
			ctx := testContext(t)
			addr := s.Addr()
			cl := client(t, s.ClientOptions())
			if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := test.stop(s); err != nil {
				t.Fatal(err)
			}
			if err := s.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if s.Addr() != addr {
				t.Fatalf("address changed from %s to %s", addr, s.Addr())
			}
			if got := get(ctx, t, cl, "k"); got != test.want {
				t.Fatalf("after restart GET k = %q, want %q", got, test.want)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	s := redistest.Require(t, redistest.Options{
		Password: "default-secret",
		User:     &redistest.User{Name: "alice", Password: "alice-secret"},
	})
	ctx := testContext(t)
	with := func(user, password string) *redis.Client {
		o := s.ClientOptions()
		o.Username, o.Password = user, password
		return client(t, o)
	}
	for _, test := range []struct {
		name           string
		user, password string
		wantErr        string // prefix of the server's error, "" for none
	}{
		{"acl user", "alice", "alice-secret", ""},
		{"default user", "", "default-secret", ""},
		{"acl user wrong password", "alice", "wrong", "WRONGPASS"},
		{"unknown user", "bob", "alice-secret", "WRONGPASS"},
		{"default user wrong password", "", "wrong", "WRONGPASS"},
		{"no password", "", "", "NOAUTH"},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := with(test.user, test.password).Set(ctx, "auth", "v", 0).Err()
			switch {
			case test.wantErr == "" && err != nil:
				t.Fatalf("SET as %q: %v", test.user, err)
			case test.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), test.wantErr)):
				t.Fatalf("SET as %q: %v, want %s", test.user, err, test.wantErr)
			}
		})
	}
	// The server's default client options log in as the ACL user.
	if got := get(ctx, t, client(t, s.ClientOptions()), "auth"); got != "v" {
		t.Fatalf("GET auth = %q, want v", got)
	}
}

func TestMaxMemory(t *testing.T) {
	s := redistest.Require(t, redistest.Options{MaxMemory: "2mb", MaxMemoryPolicy: "noeviction"})
	ctx := testContext(t)
	cl := client(t, s.ClientOptions())
	policy, err := cl.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	if policy["maxmemory-policy"] != "noeviction" {
		t.Fatalf("maxmemory-policy = %q, want noeviction", policy["maxmemory-policy"])
	}
	value := strings.Repeat("x", 64<<10)
	for i := range 1000 { // 64 MiB at most: far past 2mb
		err = cl.Set(ctx, fmt.Sprintf("big%d", i), value, 0).Err()
		if err != nil {
			break
		}
	}
	if err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET past maxmemory with noeviction: %v, want OOM", err)
	}
}

func TestValidate(t *testing.T) {
	for _, test := range []struct {
		name string
		opts redistest.Options
	}{
		{"user without password", redistest.Options{User: &redistest.User{Name: "alice"}}},
		{"user without name", redistest.Options{User: &redistest.User{Password: "secret"}}},
		{"default user", redistest.Options{User: &redistest.User{Name: "default", Password: "secret"}}},
		{"space in password", redistest.Options{Password: "a b"}},
		{"newline in config", redistest.Options{Config: map[string]string{"hz": "10\nport 1"}}},
	} {
		t.Run(test.name, func(t *testing.T) {
			if err := test.opts.Validate(); err == nil {
				t.Fatalf("Validate accepted %+v", test.opts)
			}
		})
	}
}

func TestStartWithoutBinary(t *testing.T) {
	_, err := redistest.Start(t.Context(), redistest.Options{Binary: filepath.Join(t.TempDir(), "redis-server")})
	if !errors.Is(err, redistest.ErrNotInstalled) {
		t.Fatalf("Start without a binary: %v, want %v", err, redistest.ErrNotInstalled)
	}
}

func testContext(t *testing.T) context.Context {
	// A bound for a hung server, not a timed assertion.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func client(t *testing.T, o *redis.Options) *redis.Client {
	t.Helper()
	cl := redis.NewClient(o)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// get returns the key's value, or "" if it does not exist.
func get(ctx context.Context, t *testing.T, cl *redis.Client, key string) string {
	t.Helper()
	v, err := cl.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}
