package policy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A policy is activated only whole: Reload reads the operator's files until
// two reads a settle interval apart agree (content, size and modification
// time), refuses an empty operator catalog and a reload that removes a large
// share of the operator's production entries, and, with a verification key,
// checks each operator file's detached signature before anything is parsed
// into a policy. Any refusal keeps the last good policy serving.

// DefaultMaxShrink is the largest share of the operator catalogs'
// production entries a reload may remove when Options.MaxShrink is 0.
const DefaultMaxShrink = 0.25

// stableReads bounds the attempts at a stable read of the sources.
const stableReads = 5

// SignatureSuffix names a file's detached signature: catalog.yaml is signed
// by catalog.yaml.sig, policy.rego by policy.rego.sig.
const SignatureSuffix = ".sig"

// Integrity check names: the values of the "check" label of
// egressguard_policy_integrity_refusals_total and IntegrityError.Check.
const (
	CheckUnstable  = "unstable"
	CheckEmpty     = "empty"
	CheckShrink    = "shrink"
	CheckSignature = "signature"
)

// Signature states reported in Status.Signature.
const (
	SignatureOff      = "off"
	SignatureVerified = "verified"
	SignatureFailed   = "failed"
)

// IntegrityError is a policy refused before activation by one of the
// integrity checks (CheckUnstable, CheckEmpty, CheckShrink, CheckSignature).
type IntegrityError struct {
	Check string
	Msg   string
}

func (e *IntegrityError) Error() string { return "policy: " + e.Check + ": " + e.Msg }

type integrityMetrics struct {
	refusals  *prometheus.CounterVec
	signature prometheus.Gauge
}

func newIntegrityMetrics(reg prometheus.Registerer) *integrityMetrics {
	m := &integrityMetrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "integrity_refusals_total",
			Help: "Policy loads refused before activation, by check: unstable (file still being written), empty, shrink (too many production entries removed), signature.",
		}, []string{"check"}),
		signature: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "signature_valid",
			Help: "1 when the last policy load's signatures verified (or no key is configured), 0 when the last check failed and the last good policy keeps serving.",
		}),
	}
	for _, c := range []string{CheckUnstable, CheckEmpty, CheckShrink, CheckSignature} {
		m.refusals.WithLabelValues(c)
	}
	m.signature.Set(1)
	if reg != nil {
		reg.MustRegister(m.refusals, m.signature)
	}
	return m
}

// LoadPublicKey reads an ed25519 public key: PEM "PUBLIC KEY" (PKIX, what
// `openssl pkey -pubout` writes) or the raw 32 bytes in base64.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: signature key: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("policy: signature key %s: %w", path, err)
		}
		pk, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("policy: signature key %s: %T is not an ed25519 key", path, k)
		}
		return pk, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("policy: signature key %s: want a PEM public key or %d base64 bytes", path, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// operatorFiles are the sources the operator wrote (the embedded defaults
// excluded): the ones the integrity checks apply to.
func (s sourceSet) operatorFiles(opts Options) []CatalogFile {
	var out []CatalogFile
	cats := s.catalogFiles
	if !opts.NoDefaultCatalog && len(cats) > 0 {
		cats = cats[1:]
	}
	out = append(out, cats...)
	for _, f := range slices.Concat(s.rego, s.regoTests) {
		if opts.PolicyDir != "" && strings.HasPrefix(f.Name, filepath.Clean(opts.PolicyDir)+string(filepath.Separator)) {
			out = append(out, CatalogFile(f))
		}
	}
	return out
}

// fileStamp is what a stable read compares besides content.
type fileStamp struct {
	size  int64
	mtime time.Time
}

// stamps are the size and modification time of each file and of its
// detached signature, when present: a signature rewritten on its own is a
// change too.
func stamps(files []CatalogFile) map[string]fileStamp {
	out := make(map[string]fileStamp, 2*len(files))
	for _, f := range files {
		for _, name := range []string{f.Name, f.Name + SignatureSuffix} {
			if st, err := os.Stat(name); err == nil {
				out[name] = fileStamp{st.Size(), st.ModTime()}
			}
		}
	}
	return out
}

func sameFiles(a, b []CatalogFile) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func sameStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.size != v.size || !w.mtime.Equal(v.mtime) {
			return false
		}
	}
	return true
}

// readStable reads the sources until two reads Options.Settle apart agree
// on every operator file's content, size and modification time: a file
// being rewritten in place is never parsed half-written.
func (e *Engine) readStable(ctx context.Context) (sourceSet, error) {
	first, err := readSources(e.opts)
	if err != nil {
		return first, err
	}
	for range stableReads {
		before := stamps(first.operatorFiles(e.opts))
		t := time.NewTimer(e.opts.Settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return first, ctx.Err()
		case <-t.C:
		}
		second, err := readSources(e.opts)
		if err != nil {
			return second, err
		}
		a, b := first.operatorFiles(e.opts), second.operatorFiles(e.opts)
		if sameFiles(a, b) && sameStamps(before, stamps(b)) {
			e.readStamps.Store(&before)
			return second, nil
		}
		first = second
	}
	return first, &IntegrityError{Check: CheckUnstable, Msg: fmt.Sprintf(
		"the policy files kept changing across %d reads %s apart (still being written?)", stableReads+1, e.opts.Settle)}
}

// verifySignatures checks every operator file against its detached
// signature (file + SignatureSuffix, base64 of the ed25519 signature over
// the file's bytes) when a key is configured.
func (e *Engine) verifySignatures(files []CatalogFile) error {
	if e.opts.VerifyKey == nil {
		return nil
	}
	var errs []error
	for _, f := range files {
		sig, err := os.ReadFile(f.Name + SignatureSuffix)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: no signature: %w", f.Name, err))
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
		if err != nil || !ed25519.Verify(e.opts.VerifyKey, f.Data, raw) {
			errs = append(errs, fmt.Errorf("%s: signature %s does not verify with the configured key", f.Name, f.Name+SignatureSuffix))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &IntegrityError{Check: CheckSignature, Msg: err.Error()}
	}
	return nil
}

// ProductionEntries counts what a catalog says is production: zones,
// CIDRs and provider endpoints.
func ProductionEntries(c *Catalog) int {
	n := len(c.Zones) + len(c.CIDRs)
	for _, p := range c.Providers {
		if !p.Disabled {
			n += len(p.Endpoints)
		}
	}
	return n
}

// operatorEntries parses each operator catalog file on its own and counts
// its production entries; an empty file (one that sets nothing: no
// production entries and no other section, as a file truncated to its
// comments or to "zones: []" reads) is an error unless allowEmpty. A file
// that only classifies environments or lists exceptions is not empty: the
// merged catalog's own check (no production entries at all) covers the
// rest.
func operatorEntries(files []CatalogFile, allowEmpty bool) (int, error) {
	n := 0
	var errs []error
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".rego") {
			continue
		}
		c, err := ParseCatalog(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := ProductionEntries(c)
		if k == 0 && setsNothing(c) && !allowEmpty {
			errs = append(errs, &IntegrityError{Check: CheckEmpty, Msg: fmt.Sprintf(
				"%s: the catalog names no production zone, CIDR or provider endpoint (%d bytes); set policy.allow_empty to load it", f.Name, len(f.Data))})
		}
		n += k
	}
	return n, errors.Join(errs...)
}

// setsNothing reports whether no section of c has content: every list is
// empty and every block absent or itself empty ("environments: {}").
func setsNothing(c *Catalog) bool { return emptyValue(reflect.ValueOf(c)) }

func emptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	case reflect.Pointer:
		return v.IsNil() || emptyValue(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if !emptyValue(v.Field(i)) {
				return false
			}
		}
		return true
	default:
		return v.IsZero()
	}
}

// Shrink is the change in the operator catalogs' production entries a
// reload would make.
type Shrink struct {
	Before, After int
}

// Removed is the share of Before that After no longer has (0 when it grows).
func (s Shrink) Removed() float64 {
	if s.Before == 0 || s.After >= s.Before {
		return 0
	}
	return float64(s.Before-s.After) / float64(s.Before)
}

func (s Shrink) String() string {
	return fmt.Sprintf("operator production entries %d -> %d (%.0f%% removed)", s.Before, s.After, 100*s.Removed())
}

// Check refuses the change when it removes more than maxShrink (a share,
// 0..1; 0 means DefaultMaxShrink, 1 or more allows anything).
func (s Shrink) Check(maxShrink float64) error {
	if maxShrink <= 0 {
		maxShrink = DefaultMaxShrink
	}
	if maxShrink < 1 && s.Removed() > maxShrink {
		return &IntegrityError{Check: CheckShrink, Msg: fmt.Sprintf(
			"%s, more than policy.max_shrink %.0f%%: refused (raise policy.max_shrink, or restart to load it deliberately)", s, 100*maxShrink)}
	}
	return nil
}

// CompareCatalogs is validate's view of a catalog change: the production
// entries of the old and the new operator catalog files, and whether a
// running serve would accept the change as a reload.
func CompareCatalogs(oldFiles, newFiles []string, maxShrink float64) (Shrink, error) {
	var s Shrink
	old, err := LoadCatalogFiles(oldFiles...)
	if err != nil {
		return s, err
	}
	cur, err := LoadCatalogFiles(newFiles...)
	if err != nil {
		return s, err
	}
	if s.Before, err = operatorEntries(old, true); err != nil {
		return s, err
	}
	if s.After, err = operatorEntries(cur, true); err != nil {
		return s, err
	}
	return s, s.Check(maxShrink)
}
