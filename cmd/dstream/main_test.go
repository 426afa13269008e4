package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/dstream-io/dstream/internal/kafkatest"
)

// The shared broker of this package's integration tests has a SCRAM-SHA-512
// listener and a TLS listener whose certificate kafkaCA signed.
const (
	scramUser     = "dstream"
	scramPassword = "scram-S3cret-4f9c"
)

var kafkaTLS, kafkaCA = mustTLS()

func mustTLS() (*kafkatest.TLS, []byte) {
	server, ca, err := kafkatest.NewTLS()
	if err != nil {
		panic(fmt.Sprintf("test certificates: %v", err))
	}
	return server, ca
}

func TestMain(m *testing.M) {
	code := kafkatest.Main(m, kafkatest.Options{
		SCRAM: &kafkatest.SCRAM{User: scramUser, Password: scramPassword},
		TLS:   kafkaTLS,
	})
	for _, dir := range binaryDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}
