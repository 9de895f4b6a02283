package stagingca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// minRSABits is the smallest CA key accepted.
const minRSABits = 2048

// keyMaterial is what one key file holds: the private key and, optionally,
// the CA certificate that goes with it (a cert-manager or operator CA written
// as tls.key + tls.crt into one file; CertFile overrides it for the current
// key).
type keyMaterial struct {
	key  crypto.Signer
	cert *x509.Certificate // nil: none in the file
}

// loadKeyFile reads a PEM file holding one private key (PKCS#1 "RSA PRIVATE
// KEY", SEC 1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY") and at most one
// "CERTIFICATE" block.
func loadKeyFile(path string) (keyMaterial, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return keyMaterial{}, err
	}
	m, err := parseKeyPEM(b)
	if err != nil {
		return keyMaterial{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// parseKeyPEM parses the blocks of a key file; see loadKeyFile.
func parseKeyPEM(b []byte) (keyMaterial, error) {
	var m keyMaterial
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
			if m.key != nil {
				return keyMaterial{}, fmt.Errorf("PEM block %d: a second private key (one key per file)", n)
			}
			k, err := parsePrivateKey(blk)
			if err != nil {
				return keyMaterial{}, fmt.Errorf("PEM block %d (%s): %w", n, blk.Type, err)
			}
			m.key = k
		case "CERTIFICATE":
			if m.cert != nil {
				return keyMaterial{}, fmt.Errorf("PEM block %d: a second certificate (the CA certificate only, no chain)", n)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return keyMaterial{}, fmt.Errorf("PEM block %d (CERTIFICATE): %w", n, err)
			}
			m.cert = c
		default:
			return keyMaterial{}, fmt.Errorf("PEM block %d: unexpected type %q (want a private key and optionally its CERTIFICATE)", n, blk.Type)
		}
	}
	if m.key == nil {
		return keyMaterial{}, errors.New("no PEM private key (RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)")
	}
	if m.cert != nil && !samePublicKey(m.cert.PublicKey, m.key.Public()) {
		return keyMaterial{}, errors.New("the certificate's public key is not the private key's")
	}
	return m, nil
}

func parsePrivateKey(blk *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", n, minRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if c := k.Curve; c != elliptic.P256() && c != elliptic.P384() {
			return nil, fmt.Errorf("ECDSA key on %s, want P-256 or P-384", c.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T (want RSA or ECDSA)", k)
	}
}

// parseCertPEM parses a CertFile: exactly one CERTIFICATE block.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	if more, _ := pem.Decode(rest); more != nil {
		return nil, fmt.Errorf("a second PEM block (%s): the file holds the CA certificate only", more.Type)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
