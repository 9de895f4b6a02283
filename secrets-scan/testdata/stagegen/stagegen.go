// Package stagegen writes a seeded, labeled tree of staging configuration
// (YAML, JSON, .env, INI, TOML, Java properties, Deployment env lists,
// Kubernetes Secrets) for measuring the secrets scanner.
//
// It is written from the evidence contract a user reads in the scanner's
// README, not from the scanner's code, and it does not import the scanner.
// Each case below states, in its own words, what a security engineer would
// call the values it plants; the scanner has to agree. Unlike a generator
// that mirrors the scanner's idea of a "block", this one mixes cases freely:
// a staging credential sits in the same .env file, Deployment env list or
// JSON object as another service's production host or another provider's
// live key, staging tokens come with no environment marker at all, and
// credentials are wrapped in JSON inside YAML strings and in base64 inside
// those.
//
// The one constraint on mixing is what a human could not decide either: a
// flat file (.env, one Deployment's env list) never holds two cases of the
// same provider, since "PAYPAL_MODE=live" there would speak for both.
//
// Labels name the expected kind of finding at a file and line:
//   - secret: a production credential;
//   - identifier: a live-mode public identifier (Stripe pk_live_, Adyen
//     live_ client key, Square sq0idp- application id, a production account
//     SID): proof that the config points at live mode, not a secret;
//   - credential: a real credential whose environment nothing reveals
//     (GitHub, SendGrid, Slack, Mailgun, Postmark tokens, a TLS private key);
//   - endpoint: a setting pointing at a production host.
//
// Everything else in the tree is a negative.
package stagegen

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// Kinds of expected findings.
const (
	Secret     = "secret"
	Identifier = "identifier"
	Credential = "credential"
	Endpoint   = "endpoint"
)

// Catalog is the production the tree is labeled against.
type Catalog struct {
	Zones              []string
	CIDRs              []string
	Providers          []Provider
	AWSAccounts        []string
	NonProdAWSAccounts []string
	GCPProjects        []string
	NonProdGCPProjects []string
	JWTIssuers         []string
	TwilioSIDs         []string // production account SIDs
	FingerprintSalt    []byte
	FingerprintValues  []string // plaintext, to plant; the catalog holds only Fingerprints()
}

// Provider is a live endpoint and its sandbox.
type Provider struct{ Name, Live, Sandbox string }

// Fingerprints returns hex(sha256(salt || value)) of the planted values.
func (c *Catalog) Fingerprints() []string {
	var out []string
	for _, v := range c.FingerprintValues {
		h := sha256.Sum256(append(append([]byte{}, c.FingerprintSalt...), v...))
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

// NewCatalog is the production description of a seed's tree.
func NewCatalog(seed uint64) *Catalog {
	g := gen{rand.New(rand.NewPCG(seed, 0x57a6e))}
	c := &Catalog{
		Zones: []string{"*.prod.corp.test", "pay.corp.test"},
		CIDRs: []string{"10.40.0.0/16"},
		Providers: []Provider{
			{"paypal", "api-m.paypal.com", "api-m.sandbox.paypal.com"},
			{"adyen", "*.adyenpayments.com", "checkout-test.adyen.com"},
			{"square", "connect.squareup.com", "connect.squareupsandbox.com"},
		},
		AWSAccounts:        []string{"111122223333", "444455556666"},
		NonProdAWSAccounts: []string{"777788889999", "222233334444"},
		GCPProjects:        []string{"corp-prod", "corp-payments-prod"},
		NonProdGCPProjects: []string{"corp-staging", "corp-sandbox"},
		JWTIssuers:         []string{"https://login.prod.corp.test"},
		TwilioSIDs:         []string{g.twilioSID(), g.twilioSID()},
		FingerprintSalt:    []byte("stagegen-" + g.str(alnum, 16)),
	}
	for range 3 {
		c.FingerprintValues = append(c.FingerprintValues, g.password()+g.str(alnum, 6))
	}
	return c
}

// Label is one expected finding.
type Label struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Span: the finding may be on Line .. Line+Span-1 (a YAML block scalar
	// holding a PEM key may be reported at its key or its first line).
	Span int    `json:"span"`
	Kind string `json:"kind"`
	Case string `json:"case"`
}

// Manifest describes a generated tree.
type Manifest struct {
	Seed   uint64  `json:"seed"`
	Files  int     `json:"files"`
	Bytes  int64   `json:"bytes"`
	Labels []Label `json:"labels"`
	// Cases counts planted cases by name (negatives included), so a false
	// positive can be traced to the case that planted it.
	Cases map[string]int `json:"cases"`
	// Where maps file:line of every planted setting to its case.
	Where map[string]string `json:"-"`
}

// Options of Generate.
type Options struct {
	Seed  uint64
	Bytes int64 // approximate total size
}

// setting is one planted key and value with what it should be reported as
// ("" = nothing).
type setting struct {
	group string // sub-object ("db", "aws"); "" = directly in the service
	key   string
	val   string
	pem   []string // a multi-line value instead of val
	want  string
}

// kase is one scenario: a service's settings, the providers it uses (for
// the one-case-per-provider rule of flat files) and whether it can only be
// written in some formats.
type kase struct {
	name      string
	providers []string
	sets      []setting
	only      string // "", "yaml" (needs nesting) or "structured" (yaml/json/ini)
}

func s(group, key, val, want string) setting {
	return setting{group: group, key: key, val: val, want: want}
}

// staging host names and DSNs.
func (g gen) stagingHost() string {
	return g.pick("db", "cache", "mq", "search", "api") + g.str(lowerNum, 3) + ".staging.corp.test"
}

func (g gen) prodHost() string {
	return g.pick("db", "cache", "mq", "ledger") + g.str(lowerNum, 3) + ".prod.corp.test"
}

// cases draws one scenario. Each comment says why the labels are what they
// are, in the contract's words.
func (c *Catalog) cases(g gen) kase {
	prodAcct := func() uint64 { var n uint64; fmt.Sscan(g.pick(c.AWSAccounts...), &n); return n }
	stagAcct := func() uint64 { var n uint64; fmt.Sscan(g.pick(c.NonProdAWSAccounts...), &n); return n }
	switch g.r.IntN(31) {
	case 30: // a production and a staging pair side by side: each secret goes with its own key id
		return kase{name: "aws production and staging pairs together", providers: []string{"aws"}, sets: []setting{
			s("aws_live", "access_key_id", g.awsKeyID(prodAcct()), Secret),
			s("aws_live", "secret_access_key", g.awsSecret(), Secret),
			s("aws_staging", "access_key_id", g.awsKeyID(stagAcct()), ""),
			s("aws_staging", "secret_access_key", g.awsSecret(), ""),
		}}
	case 0: // a live Stripe key says so itself
		return kase{name: "stripe live secret key", providers: []string{"stripe"}, sets: []setting{
			s("stripe", "secret_key", g.stripe("sk", "live"), Secret),
			s("stripe", "publishable_key", g.stripe("pk", "live"), Identifier),
		}}
	case 1: // test keys are staging whatever sits beside them
		return kase{name: "stripe test keys beside a production database", providers: []string{"stripe"}, sets: []setting{
			s("stripe", "secret_key", g.stripe("sk", "test"), ""),
			s("db", "host", g.prodHost(), Endpoint),
		}}
	case 2: // a production key id and its secret: both production, in either order
		id, sec := g.awsKeyID(prodAcct()), g.awsSecret()
		sets := []setting{s("aws", "access_key_id", id, Secret), s("aws", "secret_access_key", sec, Secret)}
		if g.r.IntN(2) == 0 {
			sets[0], sets[1] = sets[1], sets[0]
		}
		return kase{name: "aws production key pair", providers: []string{"aws"}, sets: sets}
	case 3: // a staging account's pair next to a production database is staging
		return kase{name: "aws staging pair beside a production database", providers: []string{"aws"}, sets: []setting{
			s("aws", "access_key_id", g.awsKeyID(stagAcct()), ""),
			s("aws", "secret_access_key", g.awsSecret(), ""),
			s("db", "host", g.prodHost(), Endpoint),
			s("db", "password", g.password(), Secret),
		}}
	case 4: // PayPal secrets carry no mode: PayPal's own mode marker decides
		return kase{name: "paypal live by mode", providers: []string{"paypal"}, sets: []setting{
			s("paypal", "mode", "live", ""),
			s("paypal", "client_id", g.paypalClientID(), ""),
			s("paypal", "client_secret", g.paypalSecret(), Secret),
		}}
	case 5: // ... or PayPal's live endpoint
		return kase{name: "paypal live by endpoint", providers: []string{"paypal"}, sets: []setting{
			s("paypal", "base_url", "https://api-m.paypal.com/v2", ""),
			s("paypal", "client_secret", g.paypalSecret(), Secret),
		}}
	case 6: // a sandbox PayPal secret with no marker, beside Adyen's LIVE marker: Adyen's evidence is not PayPal's
		return kase{name: "paypal unmarked beside adyen live", providers: []string{"paypal", "adyen"}, sets: []setting{
			s("paypal", "client_secret", g.paypalSecret(), ""),
			s("adyen", "environment", "LIVE", ""),
			s("adyen", "api_key", g.adyenAPIKey(), Secret),
		}}
	case 7: // PayPal sandbox by mode, next to a production database host
		return kase{name: "paypal sandbox beside a production host", providers: []string{"paypal"}, sets: []setting{
			s("paypal", "mode", "sandbox", ""),
			s("paypal", "client_secret", g.paypalSecret(), ""),
			s("ledger", "url", "https://pay.corp.test/ledger", Endpoint),
		}}
	case 8: // an Adyen API key is live when its own client key is live_
		return kase{name: "adyen api key with live client key", providers: []string{"adyen"}, sets: []setting{
			s("adyen", "client_key", g.adyenClientKey(true), Identifier),
			s("adyen", "api_key", g.adyenAPIKey(), Secret),
		}}
	case 9: // ... and test when its client key is test_
		return kase{name: "adyen api key with test client key", providers: []string{"adyen"}, sets: []setting{
			s("adyen", "client_key", g.adyenClientKey(false), ""),
			s("adyen", "api_key", g.adyenAPIKey(), ""),
			s("db", "url", fmt.Sprintf("postgres://app@%s:5432/app", g.prodHost()), Endpoint),
		}}
	case 10: // Square: an access token is live with Square's production environment marker
		return kase{name: "square production token", providers: []string{"square"}, sets: []setting{
			s("square", "environment", "production", ""),
			s("square", "access_token", g.squareAccessToken(), Secret),
		}}
	case 11: // Square sandbox token next to a production Twilio account (another provider's identity)
		return kase{name: "square sandbox beside production twilio sid", providers: []string{"square", "twilio"}, sets: []setting{
			s("square", "base_url", "https://connect.squareupsandbox.com", ""),
			s("square", "access_token", g.squareAccessToken(), ""),
			s("twilio", "account_sid", g.pick(c.TwilioSIDs...), Identifier),
		}}
	case 12: // Square's production application id is a live-mode identifier and makes its token live
		return kase{name: "square token with production application id", providers: []string{"square"}, sets: []setting{
			s("square", "application_id", g.squareAppID(false), Identifier),
			s("square", "access_token", g.squareAccessToken(), Secret),
		}}
	case 13: // Twilio: the auth token of a production account SID
		return kase{name: "twilio production pair", providers: []string{"twilio"}, sets: []setting{
			s("twilio", "account_sid", g.pick(c.TwilioSIDs...), Identifier),
			s("twilio", "auth_token", g.twilioToken(), Secret),
		}}
	case 14: // Twilio test account's token beside a production database
		return kase{name: "twilio test pair beside a production host", providers: []string{"twilio"}, sets: []setting{
			s("twilio", "account_sid", g.twilioSID(), ""),
			s("twilio", "auth_token", g.twilioToken(), ""),
			s("cache", "host", g.prodHost(), Endpoint),
		}}
	case 15: // a database URL with a password to a production host
		return kase{name: "production dsn", sets: []setting{
			s("", "database_url", fmt.Sprintf("postgres://app:%s@%s:5432/app", g.str(alnum, 16), g.prodHost()), Secret),
		}}
	case 16: // a production connection: host and password of one object
		return kase{name: "production db object", sets: []setting{
			s("db", "host", g.prodHost(), Endpoint),
			s("db", "user", "app", ""),
			s("db", "password", g.password(), Secret),
		}}
	case 17: // a staging connection's password next to another setting's production URL
		return kase{name: "staging password beside a production url", sets: []setting{
			s("cache", "host", g.stagingHost(), ""),
			s("cache", "password", g.password(), ""),
			s("billing", "url", "https://pay.corp.test/api", Endpoint),
		}}
	case 18: // a generic signing key in a service that says environment: production is not tied to production
		return kase{name: "signing key beside a production marker", sets: []setting{
			s("", "environment", "production", ""),
			s("", "signing_key", g.password(), ""),
		}}
	case 19: // an exact production value (fingerprint) wherever it is
		return kase{name: "fingerprinted value", sets: []setting{
			s("session", "secret", g.pick(c.FingerprintValues...), Secret),
		}}
	case 20: // always-live providers with nothing saying which environment: unknown
		return kase{name: "tokens without evidence", providers: []string{"github", "sendgrid"}, sets: []setting{
			s("github", "token", g.github(), Credential),
			s("sendgrid", "api_key", g.sendgrid(), Credential),
		}}
	case 21: // ... also next to a production host: the host is not their provider's evidence
		return kase{name: "tokens beside a production host", providers: []string{"slack", "mailgun"}, sets: []setting{
			s("slack", "bot_token", g.slackToken(), Credential),
			s("mailgun", "api_key", "key-"+g.str(hexd, 32), Credential),
			s("db", "host", g.prodHost(), Endpoint),
		}}
	case 22: // Postmark's test token is no credential; a real one is unknown
		return kase{name: "postmark tokens", providers: []string{"postmark"}, sets: []setting{
			s("postmark", "server_token", g.uuid(), Credential),
			s("postmark", "test_token", "POSTMARK_API_TEST", ""),
		}}
	case 23: // a TLS private key: unknown
		return kase{name: "tls key", only: "structured", sets: []setting{
			{group: "tls", key: "key", pem: g.pem(), want: Credential},
		}}
	case 24: // a JWT issued by production
		return kase{name: "production jwt", sets: []setting{
			s("auth", "token", g.jwt(map[string]any{"iss": c.JWTIssuers[0], "sub": "svc-" + g.str(lowerNum, 5)}), Secret),
		}}
	case 25: // a staging JWT beside a production endpoint
		return kase{name: "staging jwt beside a production host", sets: []setting{
			s("auth", "token", g.jwt(map[string]any{"iss": "https://login.staging.corp.test", "sub": "svc"}), ""),
			s("auth", "jwks_url", "https://login.prod.corp.test/.well-known/jwks.json", Endpoint),
		}}
	case 26: // a live publishable key proves live mode but does not make a generic secret production
		return kase{name: "publishable key beside a generic secret", providers: []string{"stripe"}, sets: []setting{
			s("stripe", "publishable_key", g.stripe("pk", "live"), Identifier),
			s("", "webhook_secret", "whsec_"+g.str(alnum, 32), ""),
		}}
	case 27: // a service-account JSON inside a YAML string (an env var's value)
		prod := g.r.IntN(2) == 0
		proj, want := g.pick(c.NonProdGCPProjects...), ""
		if prod {
			proj, want = g.pick(c.GCPProjects...), Secret
		}
		return kase{name: "service account json in a yaml string", only: "yaml", sets: []setting{
			s("", "google_credentials", compactJSON(g.gcpServiceAccount(proj)), want),
		}}
	case 28: // base64 of JSON inside YAML
		live := g.r.IntN(2) == 0
		mode, want := "test", ""
		if live {
			mode, want = "live", Secret
		}
		inner, _ := json.Marshal(map[string]any{"stripe": map[string]string{"secret_key": g.stripe("sk", mode)}})
		return kase{name: "base64 json in yaml", only: "yaml", sets: []setting{
			s("", "settings_b64", base64.StdEncoding.EncodeToString(inner), want),
		}}
	default: // a DSN inside a JSON string inside YAML
		host, want := g.stagingHost(), ""
		if g.r.IntN(2) == 0 {
			host, want = g.prodHost(), Secret
		}
		inner, _ := json.Marshal(map[string]any{"database": map[string]string{"url": fmt.Sprintf("mysql://app:%s@%s:3306/app", g.str(alnum, 14), host)}})
		return kase{name: "dsn in json in yaml", only: "yaml", sets: []setting{
			s("", "config_json", string(inner), want),
		}}
	}
}

func compactJSON(s string) string {
	var v any
	_ = json.Unmarshal([]byte(s), &v)
	b, _ := json.Marshal(v)
	return string(b)
}

// filler is a staging service: staging hosts, staging passwords, test keys,
// ordinary settings.
func filler(g gen) kase {
	k := kase{name: "staging filler"}
	for i := range g.n(3, 8) {
		db := fmt.Sprintf("db%d", i)
		switch g.r.IntN(9) {
		case 0:
			k.sets = append(k.sets, s(db, "host", g.stagingHost(), ""), s(db, "password", g.password(), ""))
		case 1:
			k.sets = append(k.sets, s("", "log_level", g.pick("debug", "info", "warn"), ""))
		case 2:
			k.sets = append(k.sets, s("", "api_token", g.str(alnum, 32), ""))
		case 3:
			k.sets = append(k.sets, s("", "timeout_seconds", fmt.Sprint(g.n(1, 120)), ""))
		case 4:
			k.sets = append(k.sets, s("", "redis_url", fmt.Sprintf("redis://:%s@%s:6379/0", g.str(alnum, 12), g.stagingHost()), ""))
		case 5:
			k.sets = append(k.sets, s("", "feature_flags", g.pick("checkout,v2", "none", "beta"), ""))
		case 6:
			k.sets = append(k.sets, s("", "session_secret", g.password(), ""))
		case 7:
			k.sets = append(k.sets, s("", "upstream", "https://"+g.stagingHost()+"/v1", ""))
		default:
			k.sets = append(k.sets, s("", "replicas", fmt.Sprint(g.n(1, 9)), ""))
		}
	}
	seen := map[string]bool{}
	sets := k.sets[:0]
	for _, st := range k.sets {
		if !seen[st.group+"."+st.key] {
			seen[st.group+"."+st.key] = true
			sets = append(sets, st)
		}
	}
	k.sets = sets
	return k
}

// writer accumulates one file's lines and labels.
type writer struct {
	path   string
	lines  []string
	labels []Label
	where  map[string]string
}

func (w *writer) add(line string) int {
	w.lines = append(w.lines, line)
	return len(w.lines)
}

func (w *writer) plant(line, span int, st setting, k *kase) {
	w.where[fmt.Sprintf("%s:%d", w.path, line)] = k.name
	if st.want != "" {
		w.labels = append(w.labels, Label{File: w.path, Line: line, Span: span, Kind: st.want, Case: k.name})
	}
}

// Generate writes the tree under dir and returns its labels.
func Generate(dir string, c *Catalog, opts Options) (*Manifest, error) {
	g := gen{rand.New(rand.NewPCG(opts.Seed, 0x9e4e7a7e))}
	m := &Manifest{Seed: opts.Seed, Cases: map[string]int{}, Where: map[string]string{}}
	formats := []string{"yaml", "yaml", "json", "env", "env", "ini", "toml", "properties", "deployment", "secret"}
	for i := 0; m.Bytes < opts.Bytes; i++ {
		f := formats[g.r.IntN(len(formats))]
		var ks []kase
		used := map[string]bool{}
		for len(ks) < g.n(2, 6) {
			k := filler(g)
			if g.r.IntN(3) == 0 {
				k = c.cases(g)
			}
			if !fits(f, k, used) {
				continue
			}
			for _, p := range k.providers {
				used[p] = true
			}
			ks = append(ks, k)
			m.Cases[k.name]++
		}
		rel := fmt.Sprintf("svc-%02d/%s/f%05d%s", i%53, f, i, map[string]string{
			"yaml": ".yaml", "json": ".json", "env": ".env", "ini": ".ini", "toml": ".toml", "properties": ".properties", "deployment": "-deploy.yaml", "secret": "-secret.yaml"}[f])
		w := &writer{path: rel, where: m.Where}
		render(w, g, f, ks)
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		n, err := writeLines(full, w.lines)
		if err != nil {
			return nil, err
		}
		m.Files++
		m.Bytes += n
		m.Labels = append(m.Labels, w.labels...)
	}
	return m, nil
}

// fits: nested encodings need YAML; PEM values need a structured format;
// flat files (one env list) hold one case per provider.
func fits(f string, k kase, used map[string]bool) bool {
	switch k.only {
	case "yaml":
		if f != "yaml" {
			return false
		}
	case "structured":
		if f != "yaml" && f != "json" && f != "ini" {
			return false
		}
	}
	for _, p := range k.providers {
		if used[p] {
			return false
		}
	}
	return true
}

var services = []string{"billing", "orders", "checkout", "ledger", "notify", "search", "auth", "reports", "catalog", "shipping"}

func envName(svc string, st setting) string {
	parts := []string{svc}
	if st.group != "" {
		parts = append(parts, st.group)
	}
	return strings.ToUpper(strings.Join(append(parts, st.key), "_"))
}

// render writes the cases in format f. Each case is one service.
func render(w *writer, g gen, f string, ks []kase) {
	svc := func(i int) string { return services[i%len(services)] + fmt.Sprint(i) }
	switch f {
	case "yaml":
		for i := range ks {
			w.add(svc(i) + ":")
			group := "\x00"
			for _, st := range ks[i].sets {
				ind := "  "
				if st.group != "" {
					if st.group != group {
						w.add("  " + st.group + ":")
					}
					ind = "    "
				}
				group = st.group
				if st.pem != nil {
					n := w.add(ind + st.key + ": |")
					for _, l := range st.pem {
						w.add(ind + "  " + l)
					}
					w.plant(n, 2, st, &ks[i])
					continue
				}
				w.plant(w.add(ind+st.key+": "+yamlQuote(g, st.val)), 1, st, &ks[i])
			}
		}
	case "json":
		var svcs []member
		for i := range ks {
			sets := ks[i].sets
			var ms []member
			for j := 0; j < len(sets); j++ {
				if sets[j].group == "" {
					ms = append(ms, member{lines: []string{jsonPair("    ", &sets[j])}, plant: []*planted{{&sets[j], &ks[i]}}})
					continue
				}
				var inner []member
				g0 := sets[j].group
				for ; j < len(sets) && sets[j].group == g0; j++ {
					inner = append(inner, member{lines: []string{jsonPair("      ", &sets[j])}, plant: []*planted{{&sets[j], &ks[i]}}})
				}
				j--
				ms = append(ms, object(fmt.Sprintf("    %q: {", g0), "    }", inner))
			}
			svcs = append(svcs, object(fmt.Sprintf("  %q: {", svc(i)), "  }", ms))
		}
		file := object("{", "}", svcs)
		for l, line := range file.lines {
			n := w.add(line)
			if p := file.plant[l]; p != nil {
				w.plant(n, 1, *p.st, p.k)
			}
		}
	case "env":
		w.add("# " + g.pick("staging", "stage", "preprod") + " settings")
		for i := range ks {
			for _, st := range ks[i].sets {
				w.plant(w.add(envName(svc(i), st)+"="+st.val), 1, st, &ks[i])
			}
		}
	case "ini", "toml": // a section per service and group
		for i := range ks {
			section := ""
			for _, st := range ks[i].sets {
				name := svc(i)
				if st.group != "" {
					name += "." + st.group
				}
				if name != section {
					w.add("[" + name + "]")
					section = name
				}
				switch {
				case st.pem != nil: // INI only (fits)
					n := w.add(st.key + " = " + st.pem[0])
					for _, l := range st.pem[1:] {
						w.add("  " + l)
					}
					w.plant(n, 1, st, &ks[i])
				case f == "toml":
					b, _ := json.Marshal(st.val)
					w.plant(w.add(st.key+" = "+string(b)), 1, st, &ks[i])
				default:
					w.plant(w.add(st.key+" = "+st.val), 1, st, &ks[i])
				}
			}
		}
	case "properties": // Java properties: dotted keys, one file of settings
		for i := range ks {
			for _, st := range ks[i].sets {
				key := svc(i) + "."
				if st.group != "" {
					key += st.group + "."
				}
				w.plant(w.add(key+st.key+"="+st.val), 1, st, &ks[i])
			}
		}
	case "deployment": // one container's env list: one flat list of settings
		w.add("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: " + svc(0) + "\n  namespace: staging\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        env:")
		w.lines = strings.Split(strings.Join(w.lines, "\n"), "\n")
		for i := range ks {
			for _, st := range ks[i].sets {
				w.add("        - name: " + envName(svc(i), st))
				w.plant(w.add("          value: "+yamlQuote(g, st.val)), 1, st, &ks[i])
			}
		}
	case "secret": // a Kubernetes Secret: base64 data, one flat set of settings
		w.add("apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + svc(0) + "-env\ntype: Opaque\ndata:")
		w.lines = strings.Split(strings.Join(w.lines, "\n"), "\n")
		for i := range ks {
			for _, st := range ks[i].sets {
				w.plant(w.add("  "+envName(svc(i), st)+": "+base64.StdEncoding.EncodeToString([]byte(st.val))), 1, st, &ks[i])
			}
		}
	}
}

// member is part of a JSON object: some lines (the last one takes a comma
// unless it ends the object) and the setting planted on each line.
type member struct {
	lines []string
	plant []*planted
}

type planted struct {
	st *setting
	k  *kase
}

// object joins members into an object member.
func object(open, close string, ms []member) member {
	o := member{lines: []string{open}, plant: []*planted{nil}}
	for j, m := range ms {
		for l, line := range m.lines {
			if l == len(m.lines)-1 && j < len(ms)-1 {
				line += ","
			}
			o.lines = append(o.lines, line)
			o.plant = append(o.plant, m.plant[l])
		}
	}
	o.lines = append(o.lines, close)
	o.plant = append(o.plant, nil)
	return o
}

func jsonPair(ind string, st *setting) string {
	v := st.val
	if st.pem != nil {
		v = strings.Join(st.pem, "\n") + "\n"
	}
	b, _ := json.Marshal(v)
	return fmt.Sprintf("%s%q: %s", ind, st.key, b)
}

// yamlQuote writes a scalar plain, single- or double-quoted (JSON-escaped).
func yamlQuote(g gen, v string) string {
	plain := !strings.ContainsAny(v, ":#{}[],&*!|>'\"%@`") && !strings.HasPrefix(v, "-") && v != ""
	switch {
	case plain && g.r.IntN(2) == 0:
		return v
	case !strings.Contains(v, "'") && g.r.IntN(2) == 0:
		return "'" + v + "'"
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func writeLines(path string, lines []string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	var n int64
	for _, l := range lines {
		k, _ := bw.WriteString(l)
		bw.WriteByte('\n')
		n += int64(k + 1)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}
