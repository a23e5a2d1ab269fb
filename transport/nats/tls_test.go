package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// TLS from files: a private server that verifies client certificates accepts the transport
// configured with CAFile, CertFile and KeyFile, and refuses it without the client certificate.
func TestTLSFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, caKey := newCA(t, dir)
	writeCert(t, dir, "server", ca, caKey, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	writeCert(t, dir, "client", ca, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	file := func(name string) string { return filepath.Join(dir, name) }
	p := startPrivate(t, "--tlsverify", "--tlscert", file("server.pem"), "--tlskey", file("server-key.pem"), "--tlscacert", file("ca.pem"))
	url := "tls://" + strings.TrimPrefix(p.url, "nats://")

	tr := newTransport(t, outboxnats.Config{
		Connection: outboxnats.Connection{URL: outboxnats.URL(url), CAFile: file("ca.pem"), CertFile: file("client.pem"), KeyFile: file("client-key.pem")},
		Subject:    "nojetstreamstream.{type}",
	})
	if _, err := tr.Conn().TLSConnectionState(); err != nil {
		t.Fatalf("the connection is not TLS: %v", err)
	}
	// No stream captures the subject: the publish reaches JetStream over TLS and is refused as
	// an outage, which proves the round trip.
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); !outbox.IsUnavailable(err) {
		t.Fatalf("publish over TLS to a subject no stream captures = %v, want an Unavailable error", err)
	}

	_, err := outboxnats.New(context.Background(), outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(url), CAFile: file("ca.pem"), ConnectTimeout: 2 * time.Second}})
	if err == nil {
		t.Fatal("New without the client certificate succeeded against a server that verifies clients")
	}
}

func newCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outbox test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	return ca, key
}

// writeCert writes name.pem and name-key.pem, a certificate signed by ca.
func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, edit func(*x509.Certificate)) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
