package secretscan

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/egressguard/egressguard/policy/plan"
)

// Production is what "production" looks like, as the scanner needs it. The
// command line builds it from the policy catalog (cmd/egressguard/scan.go);
// tests build it directly. The zero value knows no production at all: only
// rules whose environment is in the value itself can then fire.
type Production struct {
	// Zones are production DNS names, exact or "*.suffix"; CIDRs are
	// production networks. They are compiled into the project's matcher.
	Zones []string
	CIDRs []string
	// Providers are third-party live endpoints and their sandboxes: a live
	// endpoint in a block makes its credentials production, a sandbox
	// endpoint makes them sandbox.
	Providers []ProviderEndpoint
	// AWSAccounts are production AWS account ids (12 digits).
	AWSAccounts []string
	// GCPProjects are production GCP project ids.
	GCPProjects []string
	// JWTIssuers and JWTAudiences are production token issuers ("iss") and
	// audiences ("aud").
	JWTIssuers   []string
	JWTAudiences []string
	// AccountIDs are production provider account identifiers, keyed by
	// provider ("twilio": ["AC..."]).
	AccountIDs map[string][]string
	// Fingerprints are salted hashes of production secret values.
	Fingerprints []FingerprintSet
}

// ProviderEndpoint is one live endpoint of a provider and, when it has one,
// its sandbox host.
type ProviderEndpoint struct {
	Provider string
	Live     string // exact name or "*.suffix"; "" for port-only endpoints
	Sandbox  string // exact name, optional
}

// FingerprintSet is one export from a production vault: values are
// hex(sha256(salt || value)).
type FingerprintSet struct {
	Algorithm string // "sha256"
	Salt      []byte
	Values    []string
	Source    string
	// Provider, when set, says the set holds all of that provider's
	// production values: a credential of the provider that matches none is
	// staging's (no finding) rather than of unknown environment.
	Provider string
}

// Rule IDs of the production matcher.
const (
	ruleZone    = "production"
	livePrefix  = "live:"
	sandboxPref = "sandbox:"
)

// compiled is a Production made ready for lookups. It is immutable.
type compiled struct {
	zones     *plan.Plan // production zones and CIDRs: Matched == deny
	providers *plan.Plan // live endpoints (deny, "live:<provider>") and sandboxes (allow, "sandbox:<provider>")
	aws       map[string]bool
	gcp       map[string]bool
	issuers   map[string]bool
	audiences map[string]bool
	accounts  map[string]string // account id -> provider
	fps       []fpSet
	// fpProviders have every production value fingerprinted.
	fpProviders map[string]bool
}

type fpSet struct {
	salt   []byte
	values map[[sha256.Size]byte]string // hash -> source
}

func setOf(vs []string, fold bool) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		v = strings.TrimSpace(v)
		if fold {
			v = strings.ToLower(v)
		}
		if v != "" {
			m[v] = true
		}
	}
	return m
}

func compile(p Production) (*compiled, error) {
	var errs []error
	c := &compiled{
		aws:       setOf(p.AWSAccounts, false),
		gcp:       setOf(p.GCPProjects, true),
		issuers:   setOf(p.JWTIssuers, false),
		audiences: setOf(p.JWTAudiences, false),
		accounts:  map[string]string{},
	}
	for a := range c.aws {
		if len(a) != 12 || strings.Trim(a, "0123456789") != "" {
			errs = append(errs, fmt.Errorf("aws_accounts: %q is not a 12-digit account id", a))
		}
	}
	for prov, ids := range p.AccountIDs {
		for _, id := range ids {
			if id = strings.TrimSpace(id); id != "" {
				c.accounts[id] = prov
			}
		}
	}
	if len(p.Zones) > 0 || len(p.CIDRs) > 0 {
		zp, err := plan.Compile(plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{{
			ID: ruleZone, Hosts: p.Zones, CIDRs: p.CIDRs, Action: plan.ActionDeny,
			Reason: "production zone or network from the catalog",
		}}})
		if err != nil {
			errs = append(errs, fmt.Errorf("zones/cidrs: %w", err))
		} else {
			c.zones = zp
		}
	}
	var rules []plan.Rule
	seen := map[string]bool{}
	idx := map[string]int{} // rule id -> index in rules
	add := func(id, host string, act plan.Action) {
		if seen[host] {
			return
		}
		seen[host] = true
		if i, ok := idx[id]; ok {
			rules[i].Hosts = append(rules[i].Hosts, host)
			return
		}
		idx[id] = len(rules)
		rules = append(rules, plan.Rule{ID: id, Hosts: []string{host}, Action: act})
	}
	for i, e := range p.Providers {
		if e.Live != "" {
			add(livePrefix+e.Provider, e.Live, plan.ActionDeny)
		}
		if e.Sandbox != "" {
			if strings.HasPrefix(e.Sandbox, "*") {
				errs = append(errs, fmt.Errorf("providers[%d] (%s): sandbox %q must be an exact host", i, e.Provider, e.Sandbox))
				continue
			}
			add(sandboxPref+e.Provider, e.Sandbox, plan.ActionAllow)
		}
	}
	if len(rules) > 0 {
		pp, err := plan.Compile(plan.Spec{Default: plan.ActionAllow, Rules: rules})
		if err != nil {
			errs = append(errs, fmt.Errorf("providers: %w", err))
		} else {
			c.providers = pp
		}
	}
	for i, f := range p.Fingerprints {
		alg := strings.ToLower(f.Algorithm)
		if alg != "" && alg != "sha256" {
			errs = append(errs, fmt.Errorf("fingerprints[%d]: algorithm %q not supported (want sha256)", i, f.Algorithm))
			continue
		}
		if len(f.Salt) == 0 {
			errs = append(errs, fmt.Errorf("fingerprints[%d]: empty salt", i))
			continue
		}
		set := fpSet{salt: f.Salt, values: make(map[[sha256.Size]byte]string, len(f.Values))}
		for j, v := range f.Values {
			var h [sha256.Size]byte
			b, err := hex.DecodeString(strings.TrimSpace(v))
			if err != nil || len(b) != sha256.Size {
				errs = append(errs, fmt.Errorf("fingerprints[%d].values[%d]: not a hex sha256", i, j))
				continue
			}
			copy(h[:], b)
			set.values[h] = f.Source
		}
		c.fps = append(c.fps, set)
		if f.Provider != "" {
			if c.fpProviders == nil {
				c.fpProviders = map[string]bool{}
			}
			c.fpProviders[strings.ToLower(f.Provider)] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("secretscan: production: %w", err)
	}
	return c, nil
}

// hostClass says what the catalog knows about a host or IP.
type hostClass uint8

const (
	hostUnknown hostClass = iota
	hostProduction
	hostLive    // a provider's live endpoint
	hostSandbox // a provider's sandbox endpoint (or a name that says so)
)

// classifyHost looks a destination up in the production zones, then the
// provider endpoints. provider is set for live and sandbox endpoints.
func (c *compiled) classifyHost(host string, port uint16) (cls hostClass, provider string) {
	d := plan.Destination{Port: port}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		d.IP = ip
	} else {
		d.Host = host
	}
	if c.zones != nil {
		if dec := c.zones.Decide(d); dec.Matched == plan.ActionDeny && dec.RuleID() == ruleZone {
			return hostProduction, ""
		}
	}
	if c.providers != nil && d.Host != "" {
		dec := c.providers.Decide(d)
		id := dec.RuleID()
		switch {
		case strings.HasPrefix(id, livePrefix):
			return hostLive, id[len(livePrefix):]
		case strings.HasPrefix(id, sandboxPref):
			return hostSandbox, id[len(sandboxPref):]
		}
	}
	if d.Host != "" && saysSandbox(d.Host) {
		return hostSandbox, ""
	}
	return hostUnknown, ""
}

// saysSandbox reports whether a host name announces a test environment in
// one of its labels (api.sandbox.paypal.com, sandbox123.mailgun.org,
// checkout-test.adyen.com).
func saysSandbox(h string) bool {
	h = strings.ToLower(h)
	for _, w := range []string{"sandbox", "-test.", ".test.", "test-", "staging", "testmode"} {
		if strings.Contains(h, w) {
			return true
		}
	}
	return false
}

// fingerprint reports the source of a production fingerprint equal to
// the value, if any.
func (c *compiled) fingerprint(v []byte) (string, bool) {
	for _, s := range c.fps {
		h := sha256.New()
		h.Write(s.salt)
		h.Write(v)
		var sum [sha256.Size]byte
		h.Sum(sum[:0])
		if src, ok := s.values[sum]; ok {
			if src == "" {
				src = "catalog fingerprints"
			}
			return src, true
		}
	}
	return "", false
}

// DecodeSalt decodes a catalog salt (standard or URL base64, padded or not).
func DecodeSalt(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("salt is not base64")
}
