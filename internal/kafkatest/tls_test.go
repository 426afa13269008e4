package kafkatest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
)

func TestTLS(t *testing.T) {
	server, caPEM, err := kafkatest.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	b := kafkatest.Require(t, kafkatest.Options{TLS: server})
	ctx := testContext(t)
	topic := b.NewTopic(t, 1, nil)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("NewTLS returned no CA certificate")
	}
	overTLS := []kgo.Opt{kgo.SeedBrokers(b.TLSAddr()), kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})}

	want := values("tls", 3)
	produce(ctx, t, client(t, b, overTLS...), topic, want)
	if got := consume(ctx, t, b, topic, len(want), overTLS...); !slices.Equal(got, want) {
		t.Errorf("consumed %q over TLS, want %q", got, want)
	}

	// Without the CA the handshake fails: the listener really is TLS, with
	// the certificate it was given.
	untrusted := client(t, b, kgo.SeedBrokers(b.TLSAddr()), kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}),
		kgo.RequestRetries(0), kgo.RetryTimeout(5*time.Second))
	err = untrusted.Ping(ctx)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("ping without the CA: %v, want an unknown-authority error", err)
	}
}

func TestTLSValidates(t *testing.T) {
	_, err := kafkatest.Start(t.Context(), kafkatest.Options{TLS: &kafkatest.TLS{CertPEM: []byte("x")}})
	if err == nil {
		t.Fatal("Start accepted TLS without a key")
	}
}
