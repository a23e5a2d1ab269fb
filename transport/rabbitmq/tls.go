package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// tlsConfig builds the client TLS configuration from cfg: cfg.TLS as given, or one made from
// the CA, certificate and key files; nil when none is set (an amqps URL then uses the system
// roots). Its errors name the field and never repeat the key password.
func tlsConfig(cfg Connection) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS, nil
	}
	if cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	bad := func(field string, err error) error {
		return fmt.Errorf("rabbitmq: TLS: %s: %w", field, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemCerts, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, bad("CAFile", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCerts) {
			return nil, bad("CAFile", fmt.Errorf("%s holds no PEM certificate", cfg.CAFile))
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		certPEM, err := os.ReadFile(cfg.CertFile)
		if err != nil {
			return nil, bad("CertFile", err)
		}
		keyPEM, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, bad("KeyFile", err)
		}
		if keyPEM, err = decryptKey(keyPEM, cfg.KeyPassword.Reveal()); err != nil {
			return nil, bad("KeyFile", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, bad("CertFile/KeyFile", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// decryptKey returns keyPEM with its first private key decrypted when it is an encrypted PEM
// block ("Proc-Type: 4,ENCRYPTED", what openssl writes with -des3 or -aes256). Unencrypted keys
// pass through; an encrypted key without a password is an error.
func decryptKey(keyPEM []byte, password string) ([]byte, error) {
	rest := keyPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if password != "" {
				return nil, errors.New("KeyPassword is set but the key is not an encrypted PEM key")
			}
			return keyPEM, nil
		}
		//lint:ignore SA1019 legacy PEM encryption is still what openssl's -des3/-aes256 writes for RabbitMQ client keys.
		if !x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck // see above
			continue
		}
		if password == "" {
			return nil, errors.New("the key is encrypted and KeyPassword is empty")
		}
		//lint:ignore SA1019 see above
		der, err := x509.DecryptPEMBlock(block, []byte(password)) //nolint:staticcheck // see above
		if err != nil {
			// The error of a wrong password never contains the password.
			return nil, fmt.Errorf("decrypt the key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}), nil
	}
}
