// Package corpusgen writes a seeded, deterministic, labeled corpus of
// staging configuration files for the secrets scanner: realistic mixed
// config (Helm values, Kubernetes manifests with base64 Secrets, compose
// files, .env, properties, JSON, ECS task definitions, TOML, INI, tfvars,
// text notes) full of staging credentials that are NOT findings, with
// production credentials and endpoints planted in it that are.
//
// Honesty: values are generated from the providers' documented formats
// (values.go), never from the scanner's patterns, and the package does not
// import the scanner. Labels follow the product's documented contract
// (docs and the package comment of secretscan): a positive is a live-mode
// credential, a credential whose identity is production, a credential in a
// block that names production, a production endpoint; negatives include
// test-mode keys, sandbox contexts, placeholders and references, allowed
// lines, non-production accounts and projects, and thousands of staging
// secrets under secret-looking names.
package corpusgen

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

// Catalog is the production the corpus is labeled against.
type Catalog struct {
	Zones              []string
	CIDRs              []string
	Providers          []Provider
	AWSAccounts        []string
	NonProdAWSAccounts []string
	GCPProjects        []string
	NonProdGCPProjects []string
	JWTIssuers         []string
	JWTAudiences       []string
	TwilioSIDs         []string
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

// NewCatalog is the fixed production description of the corpus.
func NewCatalog(seed uint64) *Catalog {
	g := gen{rand.New(rand.NewPCG(seed, 0xc0ffee))}
	c := &Catalog{
		Zones: []string{"*.prod.acme.test", "payments.acme.test"},
		CIDRs: []string{"10.20.0.0/16", "2001:db8:20::/48"},
		Providers: []Provider{
			{"paypal", "api-m.paypal.com", "api-m.sandbox.paypal.com"},
			{"paypal", "api.paypal.com", "api.sandbox.paypal.com"},
			{"adyen", "*.adyenpayments.com", "checkout-test.adyen.com"},
			{"square", "connect.squareup.com", "connect.squareupsandbox.com"},
			{"twilio", "api.twilio.com", ""},
			{"mailgun", "api.mailgun.net", ""},
		},
		AWSAccounts:        []string{"123456789012", "555566667777"},
		NonProdAWSAccounts: []string{"210987654321", "098765432109"},
		GCPProjects:        []string{"acme-prod", "acme-billing-prod"},
		NonProdGCPProjects: []string{"acme-staging", "acme-dev"},
		JWTIssuers:         []string{"https://auth.prod.acme.test"},
		JWTAudiences:       []string{"payments-api-prod"},
		TwilioSIDs:         []string{g.twilioSID(), g.twilioSID()},
		FingerprintSalt:    []byte("corpus-salt-" + g.str(alnum, 16)),
	}
	for range 4 {
		c.FingerprintValues = append(c.FingerprintValues, g.password()+g.str(alnum, 8))
	}
	return c
}

// Label is one expected outcome at a file and line.
type Label struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Rule     string `json:"rule,omitempty"`
	Positive bool   `json:"positive"`
	Case     string `json:"case"`
}

// Manifest describes a generated corpus.
type Manifest struct {
	Seed   uint64  `json:"seed"`
	Files  int     `json:"files"`
	Bytes  int64   `json:"bytes"`
	Labels []Label `json:"labels"`
}

// Options of Generate.
type Options struct {
	Seed uint64
	// Bytes is the approximate total size to write.
	Bytes int64
	// Density is the chance (0..1) that a block is a planted case rather
	// than filler; 0 means 0.15.
	Density float64
}

type fileKind struct {
	name     string
	weight   int
	multi    bool // several independent blocks per document
	comments bool
	pem      bool // multi-line values
	write    func(w *writer, g gen, c *Catalog, blocks []block)
}

// block is a named group of settings: a scenario or filler.
type block struct {
	name     string
	settings []setting
	sc       *scenario
}

// writer accumulates one file's lines and labels.
type writer struct {
	path   string
	lines  []string
	labels []Label
}

func (w *writer) add(s string) int {
	w.lines = append(w.lines, s)
	return len(w.lines)
}

func (w *writer) label(line int, s setting, sc *scenario) {
	if sc == nil {
		return
	}
	if s.rule != "" && s.allow == "" {
		w.labels = append(w.labels, Label{File: w.path, Line: line, Rule: s.rule, Positive: true, Case: sc.name})
		return
	}
	w.labels = append(w.labels, Label{File: w.path, Line: line, Case: sc.name})
}

// Generate writes the corpus under dir and returns its labels.
func Generate(dir string, c *Catalog, opts Options) (*Manifest, error) {
	if opts.Density == 0 {
		opts.Density = 0.15
	}
	g := gen{rand.New(rand.NewPCG(opts.Seed, 0x5ec2e75))}
	m := &Manifest{Seed: opts.Seed}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	for i := 0; m.Bytes < opts.Bytes; i++ {
		x := g.r.IntN(total)
		var k fileKind
		for _, k = range kinds {
			if x < k.weight {
				break
			}
			x -= k.weight
		}
		sub := fmt.Sprintf("svc-%03d/%s", i%97, strings.NewReplacer(".", "-").Replace(strings.TrimPrefix(k.name, ".")))
		rel := filepath.ToSlash(filepath.Join(sub, fmt.Sprintf("f%05d%s", i, extOf(k.name))))
		w := &writer{path: rel}
		if k.name == "sa.json" {
			js, prod := c.gcpScenario(g)
			for j, l := range strings.Split(js, "\n") {
				n := w.add(l)
				if strings.Contains(l, `"private_key"`) {
					s := setting{}
					if prod {
						s.rule = rGCP
					}
					w.label(n, s, &scenario{name: "gcp service account", positive: prod})
				}
				_ = j
			}
		} else {
			k.write(w, g, c, makeBlocks(g, c, k, opts.Density))
		}
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

func extOf(kind string) string {
	switch kind {
	case ".env":
		return ".env"
	case "sa.json":
		return "-sa.json"
	}
	return "-" + kind
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

// makeBlocks draws a file's blocks. Single-block formats (one environment
// per file: .env, properties, compose, a Deployment's env) hold at most one
// planted case, and then no filler credentials: the whole file is its block.
func makeBlocks(g gen, c *Catalog, k fileKind, density float64) []block {
	nb := g.n(3, 14)
	var bs []block
	planted := false
	for i := 0; i < nb; i++ {
		if (k.multi || !planted) && g.r.Float64() < density {
			for {
				sc := c.scenario(g)
				if !fits(k, sc) {
					continue
				}
				bs = append(bs, block{name: uniq(sc.block, i), settings: sc.settings, sc: &sc})
				planted = true
				break
			}
			continue
		}
		bs = append(bs, filler(g, i))
	}
	if planted && !k.multi {
		for i := range bs {
			if bs[i].sc == nil {
				bs[i].settings = dropCredentials(bs[i].settings)
			}
		}
	}
	return bs
}

func uniq(name string, i int) string { return fmt.Sprintf("%s%d", name, i) }

func fits(k fileKind, sc scenario) bool {
	for _, s := range sc.settings {
		if s.lines != nil && !k.pem {
			return false
		}
		if s.allow != "" && !k.comments {
			return false
		}
	}
	return true
}

var credWords = []string{"password", "secret", "token", "key", "credential", "auth"}

func dropCredentials(ss []setting) []setting {
	var out []setting
	for _, s := range ss {
		lk := strings.ToLower(s.key)
		cred := false
		for _, w := range credWords {
			if strings.Contains(lk, w) {
				cred = true
			}
		}
		if !cred {
			out = append(out, s)
		}
	}
	return out
}

// filler is an ordinary staging block: settings, hosts, feature flags and
// staging credentials under secret-looking names.
func filler(g gen, i int) block {
	names := []string{"orders", "cache", "search", "mailer", "auth", "billing", "queue", "ledger", "catalog", "gateway"}
	b := block{name: uniq(g.pick(names...), i)}
	for range g.n(2, 9) {
		switch g.r.IntN(16) {
		case 0:
			b.settings = append(b.settings, setting{key: "log_level", value: g.pick("debug", "info", "warn")})
		case 1:
			b.settings = append(b.settings, setting{key: "timeout_ms", value: fmt.Sprint(g.n(100, 30000))})
		case 2:
			b.settings = append(b.settings, setting{key: g.pick("host", "redis_host", "DB_HOST"), value: g.pick("redis", "db", "pg", "mq") + ".staging.svc.cluster.local"})
		case 3:
			b.settings = append(b.settings, setting{key: g.pick("url", "API_BASE_URL", "endpoint"), value: "https://" + g.pick("api", "search", "ledger") + ".staging.acme.test/v" + fmt.Sprint(g.n(1, 3))})
		case 4:
			b.settings = append(b.settings, setting{key: g.pick("db_password", "DB_PASSWORD", "password"), value: g.password()})
		case 5:
			b.settings = append(b.settings, setting{key: g.pick("api_key", "API_KEY", "apiKey"), value: g.str(hexd, 32)})
		case 6:
			b.settings = append(b.settings, setting{key: g.pick("session_secret", "JWT_SECRET", "webhook_secret"), value: g.str(alnum, g.n(24, 48))})
		case 7:
			b.settings = append(b.settings, setting{key: g.pick("auth_token", "ACCESS_TOKEN", "token"), value: g.str(urlsafe, g.n(20, 40))})
		case 8:
			b.settings = append(b.settings, setting{key: "environment", value: g.pick("staging", "qa")})
		case 9:
			b.settings = append(b.settings, setting{key: "replicas", value: fmt.Sprint(g.n(1, 6))})
		case 10:
			b.settings = append(b.settings, setting{key: "enabled", value: g.pick("true", "false")})
		case 11:
			b.settings = append(b.settings, setting{key: g.pick("DATABASE_URL", "dsn"), value: fmt.Sprintf("postgres://app:%s@db.staging.acme.test:5432/app", g.password())})
		case 12:
			b.settings = append(b.settings, setting{key: g.pick("encryption_key", "ENCRYPTION_KEY"), value: base64.StdEncoding.EncodeToString([]byte(g.str(alnum, 32)))})
		case 13:
			b.settings = append(b.settings, setting{key: "upstream", value: fmt.Sprintf("10.30.%d.%d:%d", g.n(0, 255), g.n(1, 254), g.pickInt(80, 443, 8080))})
		case 14:
			b.settings = append(b.settings, setting{key: "image", value: "registry.acme.test/" + g.pick("orders", "web") + ":" + g.str(hexd, 7)})
		default:
			b.settings = append(b.settings, setting{key: g.pick("client_secret", "oauth_client_secret", "aws_secret_access_key"), value: g.str(b64chars, 40)})
		}
	}
	return b
}

// ----- renderers -----

func yq(g gen, v string) string {
	if v == "" || strings.ContainsAny(v, ":#{}[]&*!|>'\"%@`,") || v == "true" || v == "false" || strings.TrimLeft(v, "0123456789") == "" {
		b, _ := json.Marshal(v)
		return string(b)
	}
	if g.r.IntN(3) == 0 {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

func yamlBlock(w *writer, g gen, b block, ind string) {
	for _, s := range b.settings {
		if s.allow != "" {
			w.add(ind + "# egressguard:allow " + s.allow)
		}
		if s.lines != nil {
			w.add(ind + s.key + ": |")
			var first int
			for j, l := range s.lines {
				n := w.add(ind + "  " + l)
				if j == 0 {
					first = n
				}
			}
			w.label(first, s, b.sc)
			continue
		}
		w.label(w.add(ind+s.key+": "+yq(g, s.value)), s, b.sc)
	}
}

func writeValuesYAML(w *writer, g gen, c *Catalog, bs []block) {
	w.add("# Helm values for the staging environment")
	w.add("global:")
	w.add("  environment: staging")
	for _, b := range bs {
		if g.r.IntN(4) == 0 {
			w.add(b.name + "Outer:")
			w.add("  " + b.name + ":")
			yamlBlock(w, g, b, "    ")
		} else {
			w.add(b.name + ":")
			yamlBlock(w, g, b, "  ")
		}
		if g.r.IntN(3) == 0 {
			w.add("")
		}
	}
}

func writeManifests(w *writer, g gen, c *Catalog, bs []block) {
	for i, b := range bs {
		if i > 0 {
			w.add("---")
		}
		name := strings.ToLower(b.name)
		switch g.r.IntN(5) {
		case 0: // Deployment with an env list: the list is the block.
			for _, l := range []string{"apiVersion: apps/v1", "kind: Deployment", "metadata:", "  name: " + name, "  namespace: staging",
				"spec:", "  replicas: 2", "  template:", "    spec:", "      containers:", "      - name: app", "        image: registry.acme.test/" + name + ":1.4.2", "        env:"} {
				w.add(l)
			}
			for _, s := range b.settings {
				if s.lines != nil {
					continue
				}
				if s.allow != "" {
					w.add("        # egressguard:allow " + s.allow)
				}
				w.add("        - name: " + envKey(b, s.key))
				w.label(w.add("          value: "+yq(g, s.value)), s, b.sc)
			}
			w.add("        - name: PASSWORD_FROM_SECRET")
			w.add("          valueFrom:")
			w.add("            secretKeyRef: {name: " + name + ", key: password}")
		case 1: // Secret with base64 data: findings point at the data key.
			w.add("apiVersion: v1")
			w.add("kind: Secret")
			w.add("metadata:")
			w.add("  name: " + name)
			w.add("type: Opaque")
			w.add("data:")
			for _, s := range b.settings {
				v := s.value
				if s.lines != nil {
					v = strings.Join(s.lines, "\n") + "\n"
				}
				if s.allow != "" {
					w.add("  # egressguard:allow " + s.allow)
				}
				w.label(w.add("  "+s.key+": "+base64.StdEncoding.EncodeToString([]byte(v))), s, b.sc)
			}
		case 2: // ConfigMap: plain data.
			w.add("apiVersion: v1")
			w.add("kind: ConfigMap")
			w.add("metadata:")
			w.add("  name: " + name)
			w.add("data:")
			yamlBlock(w, g, b, "  ")
		case 3: // Secret with stringData.
			w.add("apiVersion: v1")
			w.add("kind: Secret")
			w.add("metadata: {name: " + name + "}")
			w.add("stringData:")
			yamlBlock(w, g, b, "  ")
		default: // references only: sealed and external secrets (never findings), plus the block as a ConfigMap
			w.add("apiVersion: bitnami.com/v1alpha1")
			w.add("kind: SealedSecret")
			w.add("metadata: {name: " + name + "-sealed}")
			w.add("spec:")
			w.add("  encryptedData:")
			w.add("    password: AgB" + g.str(b64chars, 340) + "==")
			w.add("---")
			w.add("apiVersion: external-secrets.io/v1beta1")
			w.add("kind: ExternalSecret")
			w.add("metadata: {name: " + name + "-ext}")
			w.add("spec:")
			w.add("  secretStoreRef: {name: vault, kind: ClusterSecretStore}")
			w.add("  data:")
			w.add("  - secretKey: api_key")
			w.add("    remoteRef: {key: prod/" + name + ", property: api_key}")
			w.add("---")
			w.add("apiVersion: v1")
			w.add("kind: ConfigMap")
			w.add("metadata: {name: " + name + "}")
			w.add("data:")
			yamlBlock(w, g, b, "  ")
		}
	}
}

func writeCompose(w *writer, g gen, c *Catalog, bs []block) {
	w.add("services:")
	for _, b := range bs {
		w.add("  " + strings.ToLower(b.name) + ":")
		w.add("    image: registry.acme.test/" + strings.ToLower(b.name) + ":latest")
		w.add("    environment:")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("      # egressguard:allow " + s.allow)
			}
			w.label(w.add("      - "+envKey(b, s.key)+"="+s.value), s, b.sc)
		}
	}
}

// envKey is the environment-variable name of a block's setting: the
// block's subject (PAYPAL_, ORDERS_) is part of the name, as in real env
// files where nothing else says which service a variable belongs to.
func envKey(b block, key string) string {
	subject := strings.TrimRight(b.name, "0123456789")
	k := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
	if !strings.Contains(strings.ToLower(k), strings.ToLower(subject)) {
		k = strings.ToUpper(subject) + "_" + k
	}
	return k
}

func envQuote(g gen, v string) string {
	if strings.ContainsAny(v, " #$") || g.r.IntN(3) == 0 {
		return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return v
}

func writeEnv(w *writer, g gen, c *Catalog, bs []block) {
	w.add("# staging environment")
	for _, b := range bs {
		w.add("")
		w.add("# " + b.name)
		for _, s := range b.settings {
			key := envKey(b, s.key)
			if s.allow != "" {
				w.add("# egressguard:allow " + s.allow)
			}
			if s.lines != nil {
				n := w.add(key + `="` + s.lines[0])
				for _, l := range s.lines[1 : len(s.lines)-1] {
					w.add(l)
				}
				w.add(s.lines[len(s.lines)-1] + `"`)
				w.label(n, s, b.sc)
				continue
			}
			prefix := ""
			if g.r.IntN(5) == 0 {
				prefix = "export "
			}
			w.label(w.add(prefix+key+"="+envQuote(g, s.value)), s, b.sc)
		}
	}
}

func writeProperties(w *writer, g gen, c *Catalog, bs []block) {
	w.add("# application-staging.properties")
	for _, b := range bs {
		w.add("")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("# egressguard:allow " + s.allow)
			}
			sep := g.pick("=", " = ", ": ")
			w.label(w.add(strings.ToLower(b.name)+"."+s.key+sep+s.value), s, b.sc)
		}
	}
}

func writeJSON(w *writer, g gen, c *Catalog, bs []block) {
	w.add("{")
	w.add(`  "environment": "staging",`)
	for i, b := range bs {
		w.add(fmt.Sprintf("  %q: {", b.name))
		for j, s := range b.settings {
			v := s.value
			if s.lines != nil {
				v = strings.Join(s.lines, "\n") + "\n"
			}
			q, _ := json.Marshal(v)
			comma := ","
			if j == len(b.settings)-1 {
				comma = ""
			}
			w.label(w.add(fmt.Sprintf("    %q: %s%s", s.key, q, comma)), s, b.sc)
		}
		if i == len(bs)-1 {
			w.add("  }")
		} else {
			w.add("  },")
		}
	}
	w.add("}")
}

func writeTaskDef(w *writer, g gen, c *Catalog, bs []block) {
	w.add("{")
	w.add(`  "family": "staging-app",`)
	w.add(`  "containerDefinitions": [`)
	for i, b := range bs {
		w.add("    {")
		w.add(fmt.Sprintf("      %q: %q,", "name", strings.ToLower(b.name)))
		w.add(`      "environment": [`)
		for j, s := range b.settings {
			comma := ","
			if j == len(b.settings)-1 {
				comma = ""
			}
			q, _ := json.Marshal(s.value)
			w.label(w.add(fmt.Sprintf(`        {"name": %q, "value": %s}%s`, envKey(b, s.key), q, comma)), s, b.sc)
		}
		w.add("      ]")
		if i == len(bs)-1 {
			w.add("    }")
		} else {
			w.add("    },")
		}
	}
	w.add("  ]")
	w.add("}")
}

func writeTOML(w *writer, g gen, c *Catalog, bs []block) {
	w.add(`title = "staging"`)
	for _, b := range bs {
		w.add("")
		w.add("[" + b.name + "]")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("# egressguard:allow " + s.allow)
			}
			q, _ := json.Marshal(s.value)
			w.label(w.add(s.key+" = "+string(q)), s, b.sc)
		}
	}
}

func writeINI(w *writer, g gen, c *Catalog, bs []block) {
	for _, b := range bs {
		w.add("[" + b.name + "]")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("; egressguard:allow " + s.allow)
			}
			w.label(w.add(s.key+" = "+s.value), s, b.sc)
		}
		w.add("")
	}
}

func writeTfvars(w *writer, g gen, c *Catalog, bs []block) {
	w.add(`environment = "staging"`)
	for _, b := range bs {
		w.add(b.name + " = {")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("  # egressguard:allow " + s.allow)
			}
			q, _ := json.Marshal(s.value)
			w.label(w.add("  "+s.key+" = "+string(q)), s, b.sc)
		}
		w.add("}")
	}
}

func writeText(w *writer, g gen, c *Catalog, bs []block) {
	w.add("Staging runbook notes")
	w.add("=====================")
	for _, b := range bs {
		w.add("")
		w.add("Settings for " + b.name + " (copy into the shell):")
		for _, s := range b.settings {
			if s.allow != "" {
				w.add("# egressguard:allow " + s.allow)
			}
			key := envKey(b, s.key)
			if s.lines != nil {
				n := w.add(key + `="` + s.lines[0])
				for _, l := range s.lines[1 : len(s.lines)-1] {
					w.add(l)
				}
				w.add(s.lines[len(s.lines)-1] + `"`)
				w.label(n, s, b.sc)
				continue
			}
			w.label(w.add("export "+key+"="+s.value), s, b.sc)
		}
	}
}

var kinds = []fileKind{
	{name: "values.yaml", weight: 20, multi: true, comments: true, pem: true, write: writeValuesYAML},
	{name: "manifests.yaml", weight: 20, multi: true, comments: true, pem: true, write: writeManifests},
	{name: "docker-compose.yml", weight: 6, comments: true, write: writeCompose},
	{name: ".env", weight: 12, comments: true, pem: true, write: writeEnv},
	{name: "application.properties", weight: 8, comments: true, write: writeProperties},
	{name: "config.json", weight: 10, multi: true, pem: true, write: writeJSON},
	{name: "taskdef.json", weight: 4, multi: true, write: writeTaskDef},
	{name: "config.toml", weight: 5, multi: true, comments: true, write: writeTOML},
	{name: "settings.ini", weight: 5, multi: true, comments: true, write: writeINI},
	{name: "staging.tfvars", weight: 4, multi: true, comments: true, write: writeTfvars},
	{name: "notes.txt", weight: 4, multi: true, comments: true, pem: true, write: writeText},
	{name: "sa.json", weight: 2},
}
