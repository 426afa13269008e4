package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok"))
		case "/slow":
			time.Sleep(time.Second)
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	for _, test := range []struct {
		path string
		want string // in the error; "" for success
	}{
		{"/healthz", ""},
		{"/readyz", "503 Service Unavailable"},
		{"/slow", "context deadline exceeded"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := get(ctx, srv.URL+test.path)
		cancel()
		if test.want == "" && err != nil || test.want != "" && (err == nil || !strings.Contains(err.Error(), test.want)) {
			t.Errorf("get(%s) = %v, want %q", test.path, err, test.want)
		}
	}
}

func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := dial(context.Background(), addr); err != nil {
		t.Errorf("dial to a listener: %v", err)
	}
	ln.Close()
	if err := dial(context.Background(), addr); err == nil {
		t.Error("dial to a closed port succeeded")
	}
}
