package secretscan

import (
	"bytes"
	"fmt"
	"strings"
)

// marker is a fact about a block: it names production or a sandbox, for a
// provider ("" = any).
type marker struct {
	prod     bool
	provider string
	line     int
	what     string
	// paired: an identity a secret pairs with (an AWS key id, a Twilio
	// account SID), under the pair prefix of its key.
	paired bool
	pair   string
}

type scopeInfo struct {
	parent      int32
	transparent bool
	root        bool     // a document or file: context never widens into it
	markers     []marker // markers anywhere in this scope's subtree
	provider    string   // provider named by the block's key or an enclosing one
	gcp         *gcpInfo
	conns       []conn // production hosts set directly in this block
	// connection: the block is named as one connection (db:, database:,
	// datasource:, [postgres]): every credential in it goes with its host.
	connection bool
}

// connectionNames name a block that is one connection.
var connectionNames = []string{"db", "database", "datasource", "postgres", "mysql", "mariadb", "mongo", "redis",
	"rabbitmq", "amqp", "kafka", "cassandra", "elasticsearch", "clickhouse", "mssql", "sqlserver", "oracle"}

// conn is a production host setting: a generic credential of the same
// block and connection prefix (DB_HOST / DB_PASSWORD) belongs to it.
type conn struct {
	prefix string
	line   int
	host   string
}

// candidate is a match whose verdict depends on evidence elsewhere in its
// block.
type candidate struct {
	rule     *Rule
	provider string // whose markers decide
	scope    int32
	f        Finding
	// prefix: the connection prefix of a generic credential's key, or the
	// pair prefix of a paired secret's (paired).
	prefix string
	paired bool
}

func (st *fileState) newScope(parent int32) int32 {
	st.scopes = append(st.scopes, scopeInfo{parent: parent, provider: st.scopes[parent].provider})
	return int32(len(st.scopes) - 1)
}

// newRoot opens a document-level block (a YAML or JSON document, an INI
// section, a text file): the search for context stops at it.
func (st *fileState) newRoot(parent int32) int32 {
	id := st.newScope(parent)
	st.scopes[id].root = true
	return id
}

// newNamedScope opens a block under a key ("paypal:", "[paypal]"): a
// provider named by the key applies to the settings inside.
func (st *fileState) newNamedScope(parent int32, name []byte) int32 {
	id := st.newScope(parent)
	if len(name) > 0 {
		if p := providerInName(string(name)); p != "" {
			st.scopes[id].provider = p
		}
		st.scopes[id].connection = connectionName(name)
	}
	return id
}

// connectionName: the block's own name (the last dotted part of an INI or
// TOML section) is one of connectionNames, possibly with a number or a
// _primary-like suffix ("db", "database", "orders.db", "postgres_main").
func connectionName(name []byte) bool {
	n := string(bytes.ToLower(name))
	if i := strings.LastIndexByte(n, '.'); i >= 0 {
		n = n[i+1:]
	}
	for _, c := range connectionNames {
		if rest, ok := strings.CutPrefix(n, c); ok && (rest == "" || rest[0] == '_' || rest[0] == '-' || '0' <= rest[0] && rest[0] <= '9') {
			return true
		}
	}
	return false
}

// setTransparent makes a scope share its parent's block: Kubernetes and ECS
// {name, value} list items are one setting each, the list is the block.
func (st *fileState) setTransparent(id int32) {
	if id > 0 {
		st.scopes[id].transparent = true
	}
}

func (st *fileState) resolve(id int32) int32 {
	for id > 0 && st.scopes[id].transparent {
		id = st.scopes[id].parent
	}
	return id
}

func (st *fileState) addMarker(scope int32, m marker) {
	for id := st.resolve(scope); ; id = st.scopes[id].parent {
		st.scopes[id].markers = append(st.scopes[id].markers, m)
		if id == 0 {
			return
		}
	}
}

func (st *fileState) defer_(r *Rule, provider string, scope int32, f Finding) {
	st.deferred = append(st.deferred, candidate{rule: r, provider: provider, scope: scope, f: f})
}

// modeMarker records PAYPAL_MODE=live, SQUARE_ENVIRONMENT=sandbox,
// livemode: true and the like.
func (st *fileState) modeMarker(it *item, kc keyClass) {
	prod := 0
	if kc.mode {
		prod = modeValue(it.val)
	}
	if prod == 0 && kc.live != 0 {
		if b, ok := boolValue(it.val); ok {
			prod = int(kc.live)
			if !b {
				prod = -prod
			}
		}
	}
	// A mode marker is evidence for its provider only (PAYPAL_MODE=live,
	// mode: live under paypal:); ENVIRONMENT=production names no provider.
	if prod != 0 && kc.provider != "" {
		st.addMarker(it.scope, marker{prod: prod > 0, provider: kc.provider, line: it.line,
			what: fmt.Sprintf("%s=%s", it.key, it.val)})
	}
}

// finish resolves deferred candidates against the evidence of their
// blocks, judges GCP service accounts and returns the file's findings.
//
// Evidence binds by provider: a candidate of provider P is judged by P's
// markers only (P's live or sandbox endpoints, P's mode settings, P's
// identities and live-mode identifiers), never by another provider's or by
// a production host. A generic credential is judged by the production
// connections of its own block (a host setting with the same connection
// prefix).
func (st *fileState) finish() {
	for i := range st.deferred {
		c := &st.deferred[i]
		switch {
		case c.rule.ID == RuleGeneric:
			h, ok := st.connection(c.scope, c.prefix)
			if !ok {
				continue
			}
			c.f.Message = fmt.Sprintf("%s: part of a connection to production host %s (line %d)", c.rule.Title, h.host, h.line)
			st.report(c.f)
		case c.rule.Env == envAlwaysLive:
			if c.rule.ID == RulePrivateKey && st.inServiceAccount(c.scope) {
				continue
			}
			prod, m, ok := st.verdict(c.scope, c.provider, nil)
			switch {
			case ok && !prod:
				continue
			case ok:
				c.f.Message = fmt.Sprintf("%s: %s says production (line %d)", c.f.Message, m.what, m.line)
			case st.d.c.fpProviders[c.provider]:
				// Every production value of the provider is fingerprinted
				// and this one matched none (a match ends emit early).
				continue
			default:
				c.f.Kind, c.f.Environment, c.f.Severity = KindCredential, EnvUnknown, SeverityLow
				c.f.Message += ": nothing in its block says which environment it belongs to"
			}
			st.report(c.f)
		default: // envContext, legacy AWS ids
			var pair *string
			if c.paired {
				pair = &c.prefix
			}
			prod, m, ok := st.verdict(c.scope, c.provider, pair)
			if !ok || !prod {
				continue
			}
			c.f.Message = fmt.Sprintf("%s: %s (line %d)", c.rule.Title, m.what, m.line)
			st.report(c.f)
		}
	}
	for i := range st.scopes {
		g := st.scopes[i].gcp
		if g == nil || !g.isSA || g.keyLine == 0 || !st.d.c.gcp[strings.ToLower(g.project)] {
			continue
		}
		r := st.d.rule[RuleGCPServiceAcct]
		f := Finding{File: st.path, Line: g.keyLine, Column: g.keyCol, Rule: r.ID, Severity: r.Severity, Kind: r.Kind, Environment: EnvProduction,
			Message:  "service-account key of production GCP project " + g.project,
			Key:      "private_key",
			Redacted: fmt.Sprintf("-----BEGIN PRIVATE KEY-----****(%d chars)", g.keyLength), Fingerprint: g.keyFP, Decoded: g.keyVia}
		st.report(f)
	}
}

func (st *fileState) inServiceAccount(scope int32) bool {
	for id := scope; ; id = st.scopes[id].parent {
		if g := st.scopes[id].gcp; g != nil && g.isSA {
			return true
		}
		if id == 0 {
			return false
		}
	}
}

// verdict walks from a block outwards to the nearest block whose subtree
// has a marker of the provider. Production wins within one block. A paired
// secret (pair != nil) is judged by the identities of its own pair when the
// block has some (PROD_AWS_... and STAGING_AWS_... in one file), else by
// all of the provider's evidence.
func (st *fileState) verdict(scope int32, provider string, pair *string) (prod bool, m marker, ok bool) {
	if provider == "" {
		return false, marker{}, false
	}
	for id := st.resolve(scope); ; id = st.scopes[id].parent {
		var best *marker
		own := false
		if pair != nil {
			for _, mk := range st.scopes[id].markers {
				own = own || mk.provider == provider && mk.paired && mk.pair == *pair
			}
		}
		for i := range st.scopes[id].markers {
			mk := &st.scopes[id].markers[i]
			if mk.provider != provider || own && !(mk.paired && mk.pair == *pair) {
				continue
			}
			if mk.prod {
				return true, *mk, true
			}
			if best == nil {
				best = mk
			}
		}
		if best != nil {
			return false, *best, true
		}
		// Widen to the enclosing block, but never into a document or file.
		if id == 0 || st.scopes[id].root || st.scopes[st.scopes[id].parent].root {
			return false, marker{}, false
		}
	}
}

// connection finds a production host set in the same block under the same
// connection prefix, or anywhere in a block named as one connection.
func (st *fileState) connection(scope int32, prefix string) (conn, bool) {
	b := &st.scopes[st.resolve(scope)]
	for _, c := range b.conns {
		if c.prefix == prefix || b.connection {
			return c, true
		}
	}
	return conn{}, false
}

// roleSuffixes end setting names that say what part of a connection they
// hold; what comes before is the connection's name (DB_HOST, DB_PASSWORD:
// "db"; spring.datasource.url, spring.datasource.password:
// "spring.datasource"). Longer words first.
var roleSuffixes = []string{"hostname", "username", "password", "passwd", "address", "endpoint", "secret", "server",
	"token", "host", "user", "addr", "pass", "pwd", "dsn", "url", "uri", "key"}

// connPrefix is a lower-case key without its role suffix and separators.
func connPrefix(k []byte) string { return keyPrefix(k, roleSuffixes) }

// pairSuffixes end the names of paired settings (an access key id and its
// secret, an account SID and its auth token); what comes before names the
// pair (PROD_AWS_ACCESS_KEY_ID and PROD_AWS_SECRET_ACCESS_KEY: "prod_aws").
// Longer words first.
var pairSuffixes = []string{"secret_access_key", "secret-access-key", "secretaccesskey", "access_key_id", "access-key-id",
	"accesskeyid", "account_sid", "account-sid", "accountsid", "auth_token", "auth-token", "authtoken", "secret_key",
	"secretkey", "access_key", "accesskey", "key_id", "keyid", "secret", "token", "sid", "key", "id"}

// pairPrefix is a lower-case key without its pair suffix and separators.
func pairPrefix(k []byte) string { return keyPrefix(k, pairSuffixes) }

// keyPrefix drops the first of the suffixes k ends with, then separators.
func keyPrefix(k []byte, suffixes []string) string {
	for _, r := range suffixes {
		if bytes.HasSuffix(k, []byte(r)) {
			k = k[:len(k)-len(r)]
			break
		}
	}
	return string(bytes.TrimRight(k, "_-. "))
}
