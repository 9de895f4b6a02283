// Package tlsprofile is the TLS profile of every egressguard listener that
// speaks TLS (the xDS server, the injection webhook): TLS 1.3, or TLS 1.2
// with ECDHE key exchange and AEAD ciphers only (AES-GCM, ChaCha20-Poly1305),
// Mozilla's "intermediate" server profile. Go's defaults still accept the
// CBC-SHA suites at TLS 1.2; this profile does not.
package tlsprofile

import "crypto/tls"

// CipherSuites are the TLS 1.2 suites allowed (TLS 1.3's are all AEAD and
// not configurable in Go).
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server applies the profile to c (a server configuration) and returns it.
func Server(c *tls.Config) *tls.Config {
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = CipherSuites
	return c
}
