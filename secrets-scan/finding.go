package secretscan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind tells a leaked production credential from a production endpoint.
type Kind string

const (
	// KindSecret is a production credential (or a value that is one).
	KindSecret Kind = "secret"
	// KindEndpoint is a non-production setting that points at a production
	// host, network or account without carrying a credential.
	KindEndpoint Kind = "endpoint"
	// KindIdentifier is a live-mode public identifier (Stripe pk_live_, an
	// Adyen live_ client key, a Square sq0idp- application id, a production
	// account SID): not a secret, but proof that the setting's provider is
	// in live mode (it is evidence for that provider's credentials).
	KindIdentifier Kind = "identifier"
	// KindCredential is a real credential whose environment nothing
	// reveals (a GitHub or Slack token with no evidence either way): it may
	// be staging's own. Environment is EnvUnknown.
	KindCredential Kind = "credential"
)

// Environment says what the scanner knows of a finding's environment.
type Environment string

// Environments.
const (
	EnvProduction Environment = "production"
	EnvUnknown    Environment = "unknown"
)

// FailOn says which findings fail a scan. The zero value fails on
// production secrets and endpoints only, which is the default; identifiers
// and credentials of unknown environment are reported but pass.
type FailOn struct {
	// Unknown also fails on credentials whose environment is unknown.
	Unknown bool
	// Identifiers also fails on live-mode identifiers.
	Identifiers bool
}

// ParseFailOn reads a --fail-on list: "production" (always on), "unknown",
// "identifier".
func ParseFailOn(names []string) (FailOn, error) {
	var o FailOn
	for _, n := range names {
		switch strings.TrimSpace(n) {
		case "production", "":
		case "unknown":
			o.Unknown = true
		case "identifier":
			o.Identifiers = true
		default:
			return o, fmt.Errorf("secretscan: fail-on %q: want production, unknown or identifier", n)
		}
	}
	return o, nil
}

// Fails reports whether f fails the scan.
func (o FailOn) Fails(f Finding) bool {
	switch f.Kind {
	case KindCredential:
		return o.Unknown
	case KindIdentifier:
		return o.Identifiers
	}
	return true
}

// Failing counts the findings that fail the scan (allowed ones excluded).
func (r *Result) Failing(o FailOn) int {
	n := 0
	for _, f := range r.Findings {
		if f.Allowed == "" && o.Fails(f) {
			n++
		}
	}
	return n
}

// Severity orders findings for triage.
type Severity string

// Severities, highest first.
const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
)

// Finding is one production secret or endpoint found. It never holds the
// value: Redacted shows only what identifies the kind of value (a public
// prefix, a host), Fingerprint identifies the finding for baselines.
type Finding struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Kind     Kind     `json:"kind"`
	// Environment is production, or unknown for kind credential.
	Environment Environment `json:"environment"`
	// Message says why the value is production.
	Message  string `json:"message"`
	Key      string `json:"key,omitempty"`
	Redacted string `json:"redacted"`
	// Fingerprint is stable across runs and line moves:
	// hex(sha256("egressguard/finding/v1" 0 rule 0 file 0 value))[:32].
	Fingerprint string `json:"fingerprint"`
	// Decoded names the decoding the value went through (base64 in a
	// Kubernetes Secret).
	Decoded string `json:"decoded,omitempty"`
	// Commit is set by --git scans.
	Commit string `json:"commit,omitempty"`
	// Allowed holds the reason of an inline egressguard:allow comment; such
	// findings are dropped from reports unless asked for.
	Allowed string `json:"allowed,omitempty"`
}

// Notice is a file or part of one that was skipped or scanned in a degraded
// way, with the reason.
type Notice struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Reason  string `json:"reason"`
	Skipped bool   `json:"skipped"`
}

func (n Notice) String() string {
	loc := n.File
	if n.Line > 0 {
		loc = fmt.Sprintf("%s:%d", n.File, n.Line)
	}
	verb := "note"
	if n.Skipped {
		verb = "skipped"
	}
	return fmt.Sprintf("%s: %s: %s", loc, verb, n.Reason)
}

// findingFingerprint hashes what identifies a finding. The value is part of
// it so that two secrets on one line differ and a moved line keeps its
// fingerprint; the hash is one-way and truncated.
func findingFingerprint(rule, file string, value []byte) string {
	h := sha256.New()
	h.Write([]byte("egressguard/finding/v1\x00"))
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(file))
	h.Write([]byte{0})
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// redact keeps a public prefix (at most keep bytes, never more than a third
// of the value) and the length.
func redact(v []byte, keep int) string {
	if keep > len(v)/3 {
		keep = len(v) / 3
	}
	for keep > 0 && !utf8.Valid(v[:keep]) {
		keep--
	}
	var b strings.Builder
	b.Write(v[:keep])
	fmt.Fprintf(&b, "****(%d chars)", len(v))
	return b.String()
}
