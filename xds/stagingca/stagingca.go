// Package stagingca is the control plane's staging CA: the certificate
// authority whose leaves the sidecars of non-production workloads present
// when they terminate TLS for an intercepted live host (api.stripe.com) to
// decide each HTTP request.
//
// The CA's anchor, the certificate pods trust, carries critical X.509 name
// constraints that permit only the hosts the catalog intercepts (see
// constraintsFor for exactly what each entry admits), so the key cannot
// vouch for any other name in a client that checks name constraints. Without
// a CertFile the anchor is derived from the key and the host set alone, so
// every replica and every restart serve byte-identical anchors. Leaves are
// short-lived, minted on first use per host, cached per host per rotation and
// renewed at two thirds of their lifetime.
package stagingca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Config is the section "intercept.ca" of serve's configuration.
type Config struct {
	// KeyFile is the PEM private key of the current CA (RSA of at least 2048
	// bits, or ECDSA P-256/P-384), optionally followed by its CERTIFICATE.
	// "" generates an ephemeral key in memory (make run): pods then trust a
	// CA that dies with the process, and each replica has its own.
	KeyFile string `yaml:"key_file"`
	// CertFile is an optional operator or cert-manager CA certificate for
	// KeyFile: self-signed, CA:TRUE, with critical permitted DNS name
	// constraints (checked; see checkCACert).
	CertFile string `yaml:"cert_file"`
	// PreviousKeyFiles are keys whose anchors pods still trust (rotation
	// overlap); they never sign. Each may hold its CERTIFICATE too;
	// otherwise its anchor is generated like the current one.
	PreviousKeyFiles []string `yaml:"previous_key_files"`
	// LeafTTL is the lifetime of minted leaves: default 24h, at least
	// 10 minutes; leaves are renewed at two thirds of it.
	LeafTTL time.Duration `yaml:"leaf_ttl"`
}

// Defaults of Config.
const (
	DefaultLeafTTL = 24 * time.Hour
	MinLeafTTL     = 10 * time.Minute
	// backdate is how far before minting a leaf's validity starts, for
	// clients whose clock is slightly behind.
	backdate = 5 * time.Minute
	// pollInterval is how often Run re-reads the key files.
	pollInterval = 10 * time.Second
)

// Validate checks the configuration without reading any file.
func (c Config) Validate() error {
	switch {
	case c.LeafTTL != 0 && c.LeafTTL < MinLeafTTL:
		return fmt.Errorf("leaf_ttl: %s is shorter than %s", c.LeafTTL, MinLeafTTL)
	case c.KeyFile == "" && c.CertFile != "":
		return errors.New("cert_file: set without key_file")
	case c.KeyFile == "" && len(c.PreviousKeyFiles) > 0:
		return errors.New("previous_key_files: set without key_file")
	}
	return nil
}

func (c Config) leafTTL() time.Duration {
	if c.LeafTTL == 0 {
		return DefaultLeafTTL
	}
	return c.LeafTTL
}

// Leaf is a minted serving certificate for one host pattern.
type Leaf struct {
	// CertPEM is the leaf followed by its chain. Anchors are self-signed
	// roots that clients hold already, so the chain is empty: the leaf only.
	CertPEM []byte
	// KeyPEM is the leaf's PKCS#8 ECDSA P-256 private key.
	KeyPEM   []byte
	NotAfter time.Time
	// Serial is the leaf's serial number in hex.
	Serial string
}

// Authority is the staging CA. Its methods are safe for concurrent use.
type Authority struct {
	cfg     Config
	log     *zap.Logger
	m       *metrics
	changes chan struct{}
	now     func() time.Time // tests move the clock
	poll    time.Duration

	mu        sync.RWMutex
	keys      keySet
	st        *state
	permitted bool // SetPermitted was called
	leaves    map[string]cachedLeaf
}

// keySet is the loaded key material and the file bytes it came from.
type keySet struct {
	current  keyMaterial
	previous []keyMaterial
	raw      [][]byte // KeyFile, CertFile, PreviousKeyFiles...: as last read, loaded or not
}

// state is derived from the keys and the host set; replaced whole.
type state struct {
	hosts      []string // normalised, sorted
	anchor     *x509.Certificate
	roots      *x509.CertPool // anchor only: the self-check of every leaf
	anchorsPEM []byte
}

type cachedLeaf struct {
	leaf    Leaf
	renewAt time.Time
}

// New loads the CA (cfg.KeyFile "" generates an ephemeral key) and builds
// its anchor for an empty host set, which permits no real name; call
// SetPermitted with the intercepted hosts before serving leaves.
func New(cfg Config, log *zap.Logger) (*Authority, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stagingca: %w", err)
	}
	a := &Authority{
		cfg:     cfg,
		log:     log,
		m:       newMetrics(),
		changes: make(chan struct{}, 1),
		now:     time.Now,
		poll:    pollInterval,
		leaves:  map[string]cachedLeaf{},
	}
	var err error
	if cfg.KeyFile == "" {
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("stagingca: ephemeral key: %w", gerr)
		}
		a.keys.current.key = k
		log.Warn("stagingca.ephemeral",
			zap.String("detail", "no intercept.ca.key_file: a CA key generated in memory; pods trust an anchor that ends with this process and differs per replica"))
	} else if a.keys, _, err = a.loadKeys(); err != nil {
		return nil, fmt.Errorf("stagingca: %w", err)
	}
	if a.st, err = a.build(a.keys, nil); err != nil {
		return nil, fmt.Errorf("stagingca: %w", err)
	}
	a.m.setAnchor(a.st)
	log.Info("stagingca.loaded", a.anchorFields(a.st)...)
	return a, nil
}

// Changes ticks (coalesced: one pending tick at most) whenever leaves or
// anchors changed: a key rotation, leaves due for renewal, a new host set.
// Whoever serves the leaves fetches them again with Leaf.
func (a *Authority) Changes() <-chan struct{} { return a.changes }

func (a *Authority) notify() {
	select {
	case a.changes <- struct{}{}:
	default:
	}
}

// SetPermitted replaces the host patterns the CA may vouch for (exact names
// and "*.suffix"; normally policy.Engine.InterceptHosts()) and rebuilds the
// anchor. On error (a malformed pattern, or a CertFile whose constraints do
// not admit a host, so its leaves would fail in every client) nothing
// changes.
func (a *Authority) SetPermitted(hosts []string) error {
	norm, err := normalizeHosts(hosts)
	if err != nil {
		a.m.permitErrs.Inc()
		return fmt.Errorf("stagingca: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	first := !a.permitted
	a.permitted = true
	if !first && slices.Equal(norm, a.st.hosts) {
		return nil
	}
	st, err := a.build(a.keys, norm)
	if err != nil {
		a.m.permitErrs.Inc()
		return fmt.Errorf("stagingca: %w", err)
	}
	changed := !slices.Equal(norm, a.st.hosts) || !bytes.Equal(st.anchorsPEM, a.st.anchorsPEM)
	a.st = st
	a.m.setAnchor(st)
	// Leaves of hosts still permitted stay valid: same key, same issuer
	// name. The others are dropped.
	for h := range a.leaves {
		if !permits(st.hosts, h) {
			delete(a.leaves, h)
		}
	}
	a.warnExcess()
	if changed {
		a.log.Info("stagingca.permitted", append(a.anchorFields(st), zap.Strings("hosts", st.hosts))...)
		a.notify()
	}
	return nil
}

// AnchorsPEM returns the anchors pods trust: the current one first, then
// those of PreviousKeyFiles.
func (a *Authority) AnchorsPEM() []byte {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.Clone(a.st.anchorsPEM)
}

// Leaf returns the serving certificate for host: a permitted pattern (exact
// or "*.suffix"), or a name a permitted wildcard covers. It is minted on
// first use and cached until two thirds of its lifetime or the next key
// rotation. Hosts outside SetPermitted are refused.
func (a *Authority) Leaf(host string) (Leaf, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	now := a.now()
	a.mu.RLock()
	c, ok := a.leaves[host]
	allowed := permits(a.st.hosts, host)
	a.mu.RUnlock()
	if !allowed {
		a.m.refused.Inc()
		return Leaf{}, fmt.Errorf("stagingca: host %q is not intercepted (the CA's name constraints permit %s)", host, a.permittedText())
	}
	if ok && now.Before(c.renewAt) {
		a.m.hits.Inc()
		return c.leaf, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.leaves[host]; ok && now.Before(c.renewAt) {
		a.m.hits.Inc()
		return c.leaf, nil
	}
	if !permits(a.st.hosts, host) { // SetPermitted ran in between
		a.m.refused.Inc()
		return Leaf{}, fmt.Errorf("stagingca: host %q is not intercepted", host)
	}
	c, err := a.mint(host, now)
	if err != nil {
		a.m.mintErrors.Inc()
		return Leaf{}, fmt.Errorf("stagingca: leaf for %q: %w", host, err)
	}
	a.leaves[host] = c
	a.m.minted.Inc()
	return c.leaf, nil
}

func (a *Authority) permittedText() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.st.hosts) == 0 {
		return "no host"
	}
	return strings.Join(a.st.hosts, ", ")
}

// permits reports whether host is one of the sorted patterns or a name under
// one of their wildcards.
func permits(hosts []string, host string) bool {
	if _, ok := slices.BinarySearch(hosts, host); ok {
		return true
	}
	for s := host; ; {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return false
		}
		s = s[i+1:]
		if _, ok := slices.BinarySearch(hosts, "*."+s); ok {
			return true
		}
	}
}

// mint issues a leaf for host, signed by the current key, and checks it
// against the current anchor with crypto/x509 before handing it out. Called
// with a.mu held.
func (a *Authority) mint(host string, now time.Time) (cachedLeaf, error) {
	anchor := a.st.anchor
	if now.After(anchor.NotAfter) {
		return cachedLeaf{}, fmt.Errorf("the CA certificate expired at %s", anchor.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cachedLeaf{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return cachedLeaf{}, err
	}
	notAfter := now.Add(a.cfg.leafTTL())
	if notAfter.After(anchor.NotAfter) {
		notAfter = anchor.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, anchor, key.Public(), a.keys.current.key)
	if err != nil {
		return cachedLeaf{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return cachedLeaf{}, err
	}
	// A leaf the anchor's constraints do not admit would fail in every
	// client; never hand one out.
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       a.st.roots,
		DNSName:     strings.Replace(host, "*", "wildcard-check", 1),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return cachedLeaf{}, fmt.Errorf("self-check against the anchor: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return cachedLeaf{}, err
	}
	return cachedLeaf{
		leaf: Leaf{
			CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
			NotAfter: notAfter,
			Serial:   hex.EncodeToString(serial.Bytes()),
		},
		renewAt: now.Add(notAfter.Sub(now) * 2 / 3),
	}, nil
}

// build derives the anchors for keys and hosts.
func (a *Authority) build(keys keySet, hosts []string) (*state, error) {
	anchor, err := anchorFor(keys.current, hosts)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	if keys.current.cert != nil {
		for _, h := range hosts {
			if !admits(anchor, h) {
				return nil, fmt.Errorf("cert_file: the CA's name constraints (permitted %v, excluded %v) do not admit intercepted host %q; its leaves would fail in every client",
					anchor.PermittedDNSDomains, anchor.ExcludedDNSDomains, h)
			}
		}
	}
	st := &state{hosts: hosts, anchor: anchor, roots: x509.NewCertPool()}
	st.roots.AddCert(anchor)
	st.anchorsPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: anchor.Raw})
	for i, p := range keys.previous {
		pa, err := anchorFor(p, hosts)
		if err != nil {
			return nil, fmt.Errorf("previous_key_files[%d]: %w", i, err)
		}
		st.anchorsPEM = append(st.anchorsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pa.Raw})...)
	}
	return st, nil
}

func anchorFor(m keyMaterial, hosts []string) (*x509.Certificate, error) {
	if m.cert != nil {
		return m.cert, nil
	}
	return generateAnchor(m.key, hosts)
}

// warnExcess logs and counts what a CertFile's constraints permit beyond the
// intercepted hosts. It is a warning, not an error: the operator's CA cannot
// be reissued at the pace of catalog edits, and Leaf refuses those hosts
// anyway; but pods trust the CA for them.
func (a *Authority) warnExcess() {
	if a.keys.current.cert == nil {
		a.m.excess.Set(0)
		return
	}
	ex := excess(a.keys.current.cert, a.st.hosts)
	a.m.excess.Set(float64(len(ex)))
	if len(ex) > 0 {
		a.log.Warn("stagingca.constraints_broader_than_intercepted_hosts",
			zap.String("cert_file", a.cfg.CertFile), zap.Strings("excess", ex), zap.Strings("intercepted", a.st.hosts),
			zap.String("detail", "pods trust this CA for names the catalog does not intercept; reissue it with name constraints for the intercepted hosts only"))
	}
}

func (a *Authority) anchorFields(st *state) []zap.Field {
	mode := "generated"
	switch {
	case a.cfg.KeyFile == "":
		mode = "ephemeral"
	case a.keys.current.cert != nil:
		mode = "cert_file"
	}
	return []zap.Field{
		zap.String("mode", mode), zap.String("subject", st.anchor.Subject.String()),
		zap.String("serial", hex.EncodeToString(st.anchor.SerialNumber.Bytes())),
		zap.Time("not_after", st.anchor.NotAfter), zap.Int("previous", len(a.keys.previous)),
	}
}

// loadKeys reads every configured file. It also returns the bytes read, so a
// failed load is not retried (and logged) until a file changes again.
func (a *Authority) loadKeys() (keySet, [][]byte, error) {
	files := append([]string{a.cfg.KeyFile, a.cfg.CertFile}, a.cfg.PreviousKeyFiles...)
	raw := make([][]byte, len(files))
	for i, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return keySet{}, nil, fmt.Errorf("%s: %w", fileField(i), err)
		}
		raw[i] = b
	}
	ks, err := parseKeys(raw, a.now())
	if err != nil {
		return keySet{}, raw, err
	}
	ks.raw = raw
	return ks, raw, nil
}

// parseKeys parses the contents of KeyFile, CertFile (nil: none) and
// PreviousKeyFiles, in that order, and checks every CA certificate at time
// now. CertFile's certificate replaces one in KeyFile.
func parseKeys(raw [][]byte, now time.Time) (keySet, error) {
	var ks keySet
	for i, b := range raw {
		switch {
		case i == 1 && b == nil:
		case i == 1:
			c, err := parseCertPEM(b)
			if err != nil {
				return keySet{}, fmt.Errorf("cert_file: %w", err)
			}
			ks.current.cert = c
		default:
			m, err := parseKeyPEM(b)
			if err != nil {
				return keySet{}, fmt.Errorf("%s: %w", fileField(i), err)
			}
			if i == 0 {
				ks.current = m
			} else {
				ks.previous = append(ks.previous, m)
			}
		}
	}
	if c := ks.current.cert; c != nil {
		if err := checkCACert(c, ks.current.key, now); err != nil {
			field := "cert_file"
			if raw[1] == nil {
				field = "key_file (its CERTIFICATE)"
			}
			return keySet{}, fmt.Errorf("%s: %w", field, err)
		}
	}
	for i, m := range ks.previous {
		if m.cert != nil {
			if err := checkCACert(m.cert, m.key, now); err != nil {
				return keySet{}, fmt.Errorf("%s: %w", fileField(i+2), err)
			}
		}
	}
	return ks, nil
}

// fileField names the config field of the i-th file of loadKeys.
func fileField(i int) string {
	switch i {
	case 0:
		return "key_file"
	case 1:
		return "cert_file"
	}
	return fmt.Sprintf("previous_key_files[%d]", i-2)
}
