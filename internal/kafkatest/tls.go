package kafkatest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// TLS is the certificate an SSL listener serves.
type TLS struct {
	// CertPEM is the server's certificate chain, leaf first, in PEM.
	CertPEM []byte
	// KeyPEM is the certificate's private key, unencrypted PKCS #8 PEM
	// ("PRIVATE KEY"), as the broker's PEM keystore wants it.
	KeyPEM []byte
}

// NewTLS makes a CA of its own and a server certificate it signs for
// 127.0.0.1 and localhost, valid for a day. It returns the server side for
// Options.TLS and the CA certificate in PEM for clients to trust.
func NewTLS() (server *TLS, caPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: tls: %w", err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kafkatest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: tls: %w", err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: tls: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: tls: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("kafkatest: tls: %w", err)
	}
	return &TLS{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// TLSAddr is the host:port of the SSL listener, or "" without Options.TLS.
func (b *Broker) TLSAddr() string {
	if b.opts.TLS == nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ports.tls))
}

func (b *Broker) keystore() string { return filepath.Join(b.dir, "tls", "server.pem") }

// writeKeystore writes the PEM keystore (key, then chain) of Options.TLS.
func (b *Broker) writeKeystore() error {
	t := b.opts.TLS
	if t == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(b.keystore()), 0o700); err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	data := append(append([]byte(nil), t.KeyPEM...), t.CertPEM...)
	if err := os.WriteFile(b.keystore(), data, 0o600); err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	return nil
}

// tlsProperties adds the SSL listener to server.properties p.
func (b *Broker) tlsProperties(p map[string]string) {
	p["listeners"] += fmt.Sprintf(",SSL://127.0.0.1:%d", b.ports.tls)
	p["advertised.listeners"] += fmt.Sprintf(",SSL://127.0.0.1:%d", b.ports.tls)
	p["listener.security.protocol.map"] += ",SSL:SSL"
	p["listener.name.ssl.ssl.keystore.type"] = "PEM"
	p["listener.name.ssl.ssl.keystore.location"] = b.keystore()
	p["listener.name.ssl.ssl.client.auth"] = "none"
}
