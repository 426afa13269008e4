package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// preflightTimeout bounds each of the connection checks at start.
const preflightTimeout = 20 * time.Second

// preflight connects to Kafka and Redis once before the job starts. Refused
// credentials and TLS failures cannot fix themselves, so they stop dstream
// at once with a message naming the settings to check (a standby would
// otherwise find out only when it takes over); anything else, such as a
// broker still starting, is logged and left to the job's retries.
func preflight(ctx context.Context, cfg Config, cl *kgo.Client, rdb redisConn, log zerolog.Logger) error {
	kctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	err := cl.Ping(kctx)
	cancel()
	if err != nil {
		err = fmt.Errorf("kafka: connect to %s: %w", strings.Join(cfg.KafkaBrokers, ","), err)
		switch {
		case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState),
			errors.Is(err, kerr.UnsupportedSaslMechanism):
			return fmt.Errorf("%w: the brokers refused SASL user %q: check DSTREAM_KAFKA_SASL_USER and DSTREAM_KAFKA_SASL_PASSWORD", err, cfg.KafkaSASLUser)
		case isTLSError(err):
			return fmt.Errorf("%w: check DSTREAM_KAFKA_TLS, DSTREAM_KAFKA_TLS_CA_FILE and that the brokers' certificates name the addresses in DSTREAM_KAFKA_BROKERS", err)
		case cfg.KafkaTLS && answersPlaintext(ctx, cfg.KafkaBrokers):
			return fmt.Errorf("%w: the brokers answer without TLS on these addresses: unset DSTREAM_KAFKA_TLS, or point DSTREAM_KAFKA_BROKERS at their TLS listener", err)
		case !cfg.KafkaTLS && answersTLS(ctx, cfg.KafkaBrokers):
			return fmt.Errorf("%w: the brokers expect TLS on these addresses: set DSTREAM_KAFKA_TLS=true (and DSTREAM_KAFKA_TLS_CA_FILE for a private CA)", err)
		}
		log.Warn().Err(err).Msg("kafka not reachable yet; the job retries")
	}
	rctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	err = rdb.Ping(rctx).Err()
	cancel()
	if err != nil {
		err = fmt.Errorf("redis: connect to %s: %w", cfg.redisHost(), err)
		switch {
		case redis.IsAuthError(err), redis.HasErrorPrefix(err, "NOPERM"):
			user := cfg.RedisUser
			if user == "" {
				user = "default"
			}
			return fmt.Errorf("%w: Redis refused user %q: check DSTREAM_REDIS_USER and DSTREAM_REDIS_PASSWORD", err, user)
		case isTLSError(err):
			return fmt.Errorf("%w: check DSTREAM_REDIS_TLS, DSTREAM_REDIS_TLS_CA_FILE and that the server's certificate names the host in DSTREAM_REDIS_ADDR", err)
		}
		log.Warn().Err(err).Msg("redis not reachable yet; the job retries")
	}
	return nil
}

// probeTimeout bounds the probes that tell a listener's protocol when the
// configured one failed.
const probeTimeout = 5 * time.Second

// answersPlaintext reports whether a broker answers a Kafka request sent
// without TLS: DSTREAM_KAFKA_TLS is set for a plaintext listener, which
// otherwise just closes every connection (a TLS greeting reads as a
// request too large to take) and looks like a broker that is down.
func answersPlaintext(ctx context.Context, brokers []string) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(probeTimeout))
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return cl.Ping(ctx) == nil
}

// answersTLS reports whether a broker completes a TLS handshake, whatever
// its certificate: DSTREAM_KAFKA_TLS is unset for a TLS listener.
func answersTLS(ctx context.Context, brokers []string) bool {
	for _, addr := range brokers {
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only asks whether TLS is spoken; nothing is sent
		dctx, cancel := context.WithTimeout(ctx, probeTimeout)
		conn, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			conn.Close()
			return true
		}
	}
	return false
}

// isTLSError reports a failed TLS handshake: an untrusted or mismatched
// certificate, or a server that does not speak TLS.
func isTLSError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &authority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}
