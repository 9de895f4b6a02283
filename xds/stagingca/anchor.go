package stagingca

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// Validity of a generated anchor. It must not depend on the clock (every
// replica and every restart derives the same certificate), so it is fixed:
// from 2025-01-01 to 9999-12-31T23:59:59Z, RFC 5280 §4.1.2.5's "no
// well-defined expiration date". A generated anchor's lifetime is its key's:
// it ends when the key is rotated out of KeyFile and PreviousKeyFiles.
var (
	anchorNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	anchorNotAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// noHosts is the only name an anchor permits while no host is intercepted:
// the RFC 6761 reserved top-level domain "invalid", so the CA vouches for
// nothing real. An empty permitted list would instead drop the extension and
// permit every name.
const noHosts = "invalid"

// normalizeHosts checks and sorts the permitted host patterns: lower-case DNS
// names, exact ("api.stripe.com") or a wildcard over a suffix of at least two
// labels ("*.stripe.com"; "*.com" is refused). IP literals are refused: the
// anchor excludes every address.
func normalizeHosts(hosts []string) ([]string, error) {
	out := make([]string, 0, len(hosts))
	for i, h := range hosts {
		name := strings.TrimSuffix(strings.ToLower(h), ".")
		wild := strings.HasPrefix(name, "*.")
		if wild {
			name = name[2:]
		}
		if err := checkDNSName(name); err != nil {
			return nil, fmt.Errorf("hosts[%d] %q: %w", i, h, err)
		}
		if wild && !strings.Contains(name, ".") {
			return nil, fmt.Errorf("hosts[%d] %q: a wildcard over a top-level domain", i, h)
		}
		if wild {
			name = "*." + name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("not a DNS name (empty or longer than 253 bytes)")
	}
	if net.ParseIP(name) != nil {
		return errors.New("an IP address (the staging CA vouches for DNS names only)")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty label or label longer than 63 bytes")
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok || (c == '-' && (j == 0 || j == len(label)-1)) {
				return fmt.Errorf("label %q: only a-z, 0-9, '-' and '_' (a '*' only as the whole first label)", label)
			}
		}
	}
	return nil
}

// constraintsFor derives the name constraints of an anchor from the
// normalised host patterns, in Go's crypto/x509 semantics (constraints.go,
// dnsHasSuffix), which OpenSSL (crypto/x509/v3_ncons.c, nc_dns) shares:
//
//   - "api.stripe.com" is permitted as "api.stripe.com". By RFC 5280
//     §4.2.1.10 a dNSName constraint admits the name and every name formed by
//     adding labels on the left, so it also admits x.api.stripe.com; the
//     excluded subtree ".api.stripe.com" (leading period: subdomains only,
//     RFC 5280 errata 5997) takes those back, unless another permitted
//     pattern lies under the host.
//   - "*.stripe.com" is permitted as ".stripe.com": every name below
//     stripe.com at any depth, but not stripe.com itself.
//   - Every IPv4 and IPv6 address is excluded (0.0.0.0/0, ::/0), as the
//     CA/Browser Forum requires of technically constrained CAs: DNS
//     constraints alone leave IP-address SANs unconstrained.
func constraintsFor(hosts []string) (permitted, excluded []string) {
	if len(hosts) == 0 {
		return []string{noHosts}, nil
	}
	for _, h := range hosts {
		if s, ok := strings.CutPrefix(h, "*."); ok {
			permitted = append(permitted, "."+s)
			continue
		}
		permitted = append(permitted, h)
		under := false
		for _, o := range hosts {
			if o != h && (strings.HasSuffix(o, "."+h)) {
				under = true
				break
			}
		}
		if !under {
			excluded = append(excluded, "."+h)
		}
	}
	return permitted, excluded
}

var allIPs = []*net.IPNet{
	{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
}

// admits reports whether host (a normalised pattern) is admitted by a
// certificate's DNS name constraints, with Go's semantics (see
// constraintsFor); a wildcard pattern is checked as its SAN "*.s" is.
func admits(c *x509.Certificate, host string) bool {
	match := func(constraint string) bool {
		if constraint == "" {
			return true
		}
		constraint = strings.ToLower(constraint)
		if constraint[0] == '.' {
			return strings.HasSuffix(host, constraint)
		}
		return host == constraint || strings.HasSuffix(host, "."+constraint)
	}
	if len(c.PermittedDNSDomains) > 0 && !slices.ContainsFunc(c.PermittedDNSDomains, match) {
		return false
	}
	return !slices.ContainsFunc(c.ExcludedDNSDomains, match)
}

// anchorSubject names a generated anchor. It depends on the key only, never
// on the hosts: a pod that mounted the anchor for an earlier host set still
// chains a new leaf (same issuer name, same key) for a host both sets permit.
func anchorSubject(pub crypto.PublicKey) (pkix.Name, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return pkix.Name{}, err
	}
	sum := sha256.Sum256(spki)
	return pkix.Name{
		Organization: []string{"egressguard"},
		CommonName:   "egressguard staging CA " + hex.EncodeToString(sum[:6]),
	}, nil
}

// generateAnchor builds the self-signed, name-constrained anchor for a key
// and a host set. Every input is derived from the key and the hosts (serial:
// SHA-256 over both; fixed validity; subject key ID: Go's hash of the public
// key) and the signature is deterministic: RSA PKCS#1 v1.5 always is, and
// ECDSA is when x509.CreateCertificate gets a nil rand (crypto/ecdsa then
// signs per RFC 6979; with any Reader Go 1.26 hedges with fresh randomness).
// So the same key and hosts give byte-identical DER on every replica and
// restart (TestAnchorDeterministic).
func generateAnchor(key crypto.Signer, hosts []string) (*x509.Certificate, error) {
	subject, err := anchorSubject(key.Public())
	if err != nil {
		return nil, err
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	h := sha256.New()
	h.Write([]byte("egressguard stagingca anchor v1\x00"))
	h.Write(spki)
	for _, host := range hosts {
		h.Write([]byte{0})
		h.Write([]byte(host))
	}
	serial := new(big.Int).SetBytes(h.Sum(nil)[:16])
	serial.SetBit(serial, 127, 0) // positive, at most 16 bytes
	serial.SetBit(serial, 126, 1) // never zero
	permitted, excluded := constraintsFor(hosts)
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     subject,
		NotBefore:                   anchorNotBefore,
		NotAfter:                    anchorNotAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitted,
		ExcludedDNSDomains:          excluded,
		ExcludedIPRanges:            allIPs,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// checkCACert checks an operator or cert-manager CA certificate for key at
// time now. The errors here refuse the certificate: a CA without critical DNS
// name constraints would make every staging pod trust a CA for the whole
// internet.
func checkCACert(c *x509.Certificate, key crypto.Signer, now time.Time) error {
	switch {
	case !samePublicKey(c.PublicKey, key.Public()):
		return errors.New("the certificate's public key is not the key file's")
	case !c.BasicConstraintsValid || !c.IsCA:
		return errors.New("not a CA certificate (basicConstraints CA:TRUE missing)")
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return errors.New("key usage lacks certSign")
	case c.CheckSignatureFrom(c) != nil:
		// OpenSSL-based clients only accept a self-signed trust anchor unless
		// told about partial chains, so the anchor pods trust is this one.
		return errors.New("not self-signed: give a root CA (cert-manager: a Certificate with isCA and nameConstraints from a selfSigned issuer)")
	case now.Before(c.NotBefore) || now.After(c.NotAfter):
		return fmt.Errorf("not valid now (valid %s to %s)", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	case len(c.PermittedDNSDomains) == 0:
		return errors.New("no permitted DNS name constraints: the CA would vouch for every name")
	case slices.Contains(c.PermittedDNSDomains, ""):
		return errors.New("an empty permitted DNS constraint permits every name")
	case !c.PermittedDNSDomainsCritical:
		return errors.New("the name constraints extension is not critical (RFC 5280 §4.2.1.10: MUST be critical)")
	}
	return nil
}

// excess lists the DNS constraints of c that permit more than hosts (the
// normalised intercepted patterns) need: anything that is not an exact host
// or the ".suffix" of a wildcard. It returns a note when IP addresses are not
// excluded.
func excess(c *x509.Certificate, hosts []string) []string {
	var out []string
	for _, p := range c.PermittedDNSDomains {
		p = strings.ToLower(p)
		want := p
		if s, ok := strings.CutPrefix(p, "."); ok {
			want = "*." + s
		}
		if !slices.Contains(hosts, want) {
			out = append(out, p)
		}
	}
	if !slices.ContainsFunc(c.ExcludedIPRanges, func(n *net.IPNet) bool { o, _ := n.Mask.Size(); return o == 0 && n.IP.To4() != nil }) ||
		!slices.ContainsFunc(c.ExcludedIPRanges, func(n *net.IPNet) bool { o, _ := n.Mask.Size(); return o == 0 && n.IP.To4() == nil }) {
		out = append(out, "IP addresses (no excluded 0.0.0.0/0 and ::/0)")
	}
	return out
}
