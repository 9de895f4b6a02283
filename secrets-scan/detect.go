package secretscan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

var (
	reMailgunV2 = regexp.MustCompile(`\b[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}\b`)
	reUUID      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reHex32     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	reAWSSecret = regexp.MustCompile(`^[A-Za-z0-9/+]{40}$`)
	reURL       = regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s'"<>\x60,;]+`)
	reJDBC      = regexp.MustCompile(`jdbc:[a-z0-9]+:[^\s'"<>\x60]+`)
	reGoDSN     = regexp.MustCompile(`([^\s'"/:@]*)(?::([^\s'"@]*))?@tcp\(([^)\s]+)\)`)
	reLibpq     = regexp.MustCompile(`\bhost=([^\s'"]+)`)
	reLibpqPass = regexp.MustCompile(`\bpassword=([^\s'"]+)`)
)

// dbSchemes are URL schemes of databases and brokers.
var dbSchemes = map[string]bool{
	"postgres": true, "postgresql": true, "mysql": true, "mariadb": true, "mongodb": true, "mongodb+srv": true,
	"redis": true, "rediss": true, "amqp": true, "amqps": true, "kafka": true, "nats": true, "mssql": true,
	"sqlserver": true, "clickhouse": true, "cassandra": true, "memcached": true, "elasticsearch": true,
	"oracle": true, "cockroachdb": true, "tcp": false,
}

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
}

// conn is a production host setting: a generic credential of the same
// block and connection prefix (DB_HOST / DB_PASSWORD) belongs to it.
type conn struct {
	prefix string
	line   int
	host   string
}

type gcpInfo struct {
	isSA      bool
	project   string
	projLine  int
	keyLine   int
	keyCol    int
	keyFP     string
	keyVia    string
	keyLength int
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

// fileState is the per-file detection state. Decoders feed it items.
type fileState struct {
	d        *Detector
	path     string
	scopes   []scopeInfo
	deferred []candidate
	findings []Finding
	notices  []Notice
	keyBuf   []byte
	// override maps items of decoded content (base64 in a Secret) back to
	// the line and column of the original text.
	override *overridePos
	depth    int
	// emitHook, when set, may take an item instead of emit (JSON Secret
	// data held back until the object's kind is known).
	emitHook func(item) bool
}

type overridePos struct {
	line, col int
	via       string
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
	}
	return id
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

func (st *fileState) notice(line int, skipped bool, format string, args ...any) {
	if st.override != nil {
		line = st.override.line
	}
	st.notices = append(st.notices, Notice{File: st.path, Line: line, Reason: fmt.Sprintf(format, args...), Skipped: skipped})
}

func (st *fileState) addMarker(scope int32, m marker) {
	for id := st.resolve(scope); ; id = st.scopes[id].parent {
		st.scopes[id].markers = append(st.scopes[id].markers, m)
		if id == 0 {
			return
		}
	}
}

// item is one setting a decoder found: the value (unquoted), its key (the
// last path segment; for {name, value} items the name), where it starts,
// and its block. raw is set when val is verbatim file text, so positions
// inside it map back to lines and columns.
type item struct {
	key   []byte
	val   []byte
	line  int
	col   int
	scope int32
	raw   bool
}

// pos maps an offset in the item's value to a line and column.
func (st *fileState) pos(it *item, off int) (line, col int) {
	if st.override != nil {
		return st.override.line, st.override.col
	}
	if !it.raw || off <= 0 || off > len(it.val) {
		return it.line, it.col
	}
	nl := bytes.Count(it.val[:off], []byte{'\n'})
	if nl == 0 {
		return it.line, it.col + off
	}
	last := bytes.LastIndexByte(it.val[:off], '\n')
	return it.line + nl, off - last
}

func (st *fileState) newFinding(r *Rule, it *item, start, end int, msg string) Finding {
	line, col := st.pos(it, start)
	v := it.val[start:end]
	f := Finding{
		File: st.path, Line: line, Column: col, Rule: r.ID, Severity: r.Severity, Kind: r.Kind,
		Environment: EnvProduction, Message: msg, Key: string(it.key), Redacted: redact(v, r.prefix),
		Fingerprint: findingFingerprint(r.ID, st.path, v),
	}
	if st.override != nil {
		f.Decoded = st.override.via
	}
	return f
}

func (st *fileState) report(f Finding) { st.findings = append(st.findings, f) }

func (st *fileState) defer_(r *Rule, provider string, scope int32, f Finding) {
	st.deferred = append(st.deferred, candidate{rule: r, provider: provider, scope: scope, f: f})
}

// emit is the decoders' entry point: one setting.
func (st *fileState) emit(it item) {
	if st.emitHook != nil && st.emitHook(it) {
		return
	}
	v := bytes.TrimSpace(it.val)
	if len(v) == 0 {
		return
	}
	if len(v) != len(it.val) {
		off := bytes.Index(it.val, v)
		if it.raw && off > 0 {
			it.line, it.col = st.pos(&it, off)
		}
		it.val = v
	}
	d := st.d
	kc := d.keys.classify(&st.keyBuf, it.key)
	if kc.provider == "" {
		kc.provider = st.scopes[it.scope].provider
	}

	if len(d.c.fps) > 0 && len(v) >= 6 {
		if src, ok := d.c.fingerprint(v); ok {
			st.report(st.newFinding(d.rule[RuleFingerprint], &it, 0, len(v), "equals a production secret from "+src))
			return
		}
	}
	if inner, via := nestedContent(v); inner != nil {
		line, col := st.pos(&it, 0) // the outermost key's position when nested
		st.decodedContent(it.key, inner, line, col, it.scope, via)
		return
	}
	st.modeMarker(&it, kc)
	st.gcpItem(&it)

	m := d.anch.mask(v)
	handled := false
	if m != 0 {
		handled = st.anchored(&it, m, kc)
	}
	if !d.urlRule.hit(m) && (kc.host || looksLikeHostValue(v)) {
		st.hostValue(&it, kc)
	}
	if handled || isReferenceValue(v) {
		return
	}
	st.keyed(&it, kc)
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

// gcpItem follows service-account JSON objects.
func (st *fileState) gcpItem(it *item) {
	if len(it.key) == 0 {
		return
	}
	switch string(it.key) {
	case "type":
		if string(it.val) == "service_account" {
			st.gcp(it.scope).isSA = true
		}
	case "project_id":
		g := st.gcp(it.scope)
		g.project, g.projLine = string(it.val), it.line
		if len(st.d.c.gcp) > 0 {
			prod := st.d.c.gcp[strings.ToLower(g.project)]
			st.addMarker(it.scope, marker{prod: prod, provider: "gcp", line: it.line, what: "GCP project " + g.project})
		}
	case "private_key":
		g := st.gcp(it.scope)
		g.keyLine, g.keyCol = st.pos(it, 0)
		g.keyFP = findingFingerprint(RuleGCPServiceAcct, st.path, it.val)
		g.keyLength = len(it.val)
		if st.override != nil {
			g.keyVia = st.override.via
		}
	}
}

func (st *fileState) gcp(scope int32) *gcpInfo {
	s := &st.scopes[scope]
	if s.gcp == nil {
		s.gcp = &gcpInfo{}
	}
	return s.gcp
}

// anchored runs the rules whose anchors occur in the value; a test-mode
// anchor (sk_test_) is sandbox evidence for its provider. It reports
// whether the value was recognised by a rule (then no generic rule
// applies).
func (st *fileState) anchored(it *item, m uint64, kc keyClass) bool {
	handled := false
	for i, r := range st.d.rules {
		ra := &st.d.ruleAnch[i]
		if ra.test&m != 0 && (r.testRe == nil || r.testRe.Match(it.val)) {
			handled = true
			st.addMarker(it.scope, marker{prod: false, provider: r.Provider, line: it.line, what: r.Provider + " test-mode value"})
		}
		if !ra.hit(m) {
			continue
		}
		detect := r.detect
		if detect == nil {
			detect = (*fileState).match
		}
		handled = detect(st, it, kc, r) || handled
	}
	return handled
}

// match runs a rule's pattern: in-value and identity rules report at once
// (identifiers are also live-mode evidence for their provider), always-live
// and context rules wait for the evidence of the rest of the file.
func (st *fileState) match(it *item, _ keyClass, r *Rule) bool {
	v := it.val
	handled := false
	for _, loc := range r.re.FindAllIndex(v, -1) {
		if longer(v, loc) {
			continue
		}
		handled = true
		if isPlaceholder(v[loc[0]:loc[1]]) {
			continue
		}
		f := st.newFinding(r, it, loc[0], loc[1], r.message)
		switch {
		case r.Env == envAlwaysLive || r.Env == envContext:
			st.defer_(r, r.Provider, it.scope, f)
		case r.Kind == KindIdentifier:
			st.report(f)
			st.addMarker(it.scope, marker{prod: true, provider: r.Provider, line: it.line, what: r.Title})
		default:
			st.report(f)
		}
	}
	return handled
}

// longer reports whether a match is followed by more token characters: it
// is then part of a longer token, not the format matched.
func longer(v []byte, loc []int) bool {
	return loc[1] < len(v) && isIdentByte(v[loc[1]])
}

func (st *fileState) twilioSID(it *item, _ keyClass, r *Rule) bool {
	if len(it.val) < 34 {
		return false
	}
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		if longer(it.val, loc) {
			continue
		}
		found = true
		sid := string(it.val[loc[0]:loc[1]])
		prov, prod := st.d.c.accounts[sid]
		if prod {
			st.report(st.newFinding(r, it, loc[0], loc[1], "Twilio account SID listed as production ("+prov+")"))
			st.addMarker(it.scope, marker{prod: true, provider: "twilio", line: it.line, what: "production Twilio account " + sid[:6] + "…", paired: true, pair: pairPrefix(st.keyBuf)})
		} else if st.d.hasAccounts {
			st.addMarker(it.scope, marker{prod: false, provider: "twilio", line: it.line, what: "non-production Twilio account", paired: true, pair: pairPrefix(st.keyBuf)})
		}
	}
	// A SID is an identifier, never a credential: generic rules may still
	// look at the value only if it is something else.
	return found
}

func (st *fileState) awsKeyID(it *item, _ keyClass, r *Rule) bool {
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		if longer(it.val, loc) {
			continue
		}
		found = true
		kid := it.val[loc[0]:loc[1]]
		if isPlaceholder(kid) {
			continue
		}
		acct, ok := awsAccountFromKeyID(kid)
		switch {
		case !ok:
			// Legacy key id: only the block can tell.
			st.defer_(r, "aws", it.scope, st.newFinding(r, it, loc[0], loc[1], "AWS access key id (legacy format, account not encoded) in a production block"))
		case st.d.c.aws[acct]:
			st.report(st.newFinding(r, it, loc[0], loc[1], "AWS access key id of production account "+acct))
			st.addMarker(it.scope, marker{prod: true, provider: "aws", line: it.line, what: "AWS key of production account " + acct, paired: true, pair: pairPrefix(st.keyBuf)})
		case len(st.d.c.aws) > 0:
			st.addMarker(it.scope, marker{prod: false, provider: "aws", line: it.line, what: "AWS key of account " + acct, paired: true, pair: pairPrefix(st.keyBuf)})
		}
	}
	return found
}

func (st *fileState) jwt(it *item, _ keyClass, r *Rule) bool {
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		iss, aud, ok := jwtClaims(it.val[loc[0]:loc[1]])
		if !ok {
			continue
		}
		found = true
		var why string
		if st.d.c.issuers[iss] {
			why = "JWT issued by production issuer " + iss
		}
		for _, a := range aud {
			if why == "" && st.d.c.audiences[a] {
				why = "JWT for production audience " + a
			}
		}
		if why != "" {
			st.report(st.newFinding(r, it, loc[0], loc[1], why))
		}
	}
	return found
}

// pem finds private-key blocks with a real body. Keys inside GCP
// service-account objects are judged by the project instead.
func (st *fileState) pem(it *item, _ keyClass, r *Rule) bool {
	v := it.val
	found := false
	for _, loc := range r.re.FindAllIndex(v, -1) {
		found = true
		rest := v[loc[1]:]
		end := bytes.Index(rest, []byte("-----END"))
		if end < 0 {
			end = len(rest)
			if end > 8192 {
				end = 8192
			}
		}
		if !pemBody(rest[:end]) {
			continue
		}
		stop := loc[1] + end
		f := st.newFinding(r, it, loc[0], stop, r.message)
		f.Redacted = string(v[loc[0]:loc[1]]) + "****"
		st.defer_(r, "", it.scope, f)
	}
	return found
}

// pemBody: at least 64 base64 characters once whitespace, escaped newlines
// and quotes are dropped, and nothing else.
func pemBody(b []byte) bool {
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\\' && i+1 < len(b) && (b[i+1] == 'n' || b[i+1] == 'r'):
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'':
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/', c == '=':
			n++
		case c == ':' || c == '-' || c == ',': // Proc-Type / DEK-Info headers of encrypted keys
		default:
			return false
		}
	}
	return n >= 64
}

// looksLikeHostValue: a bare host name, IP or host:port.
func looksLikeHostValue(v []byte) bool {
	if len(v) < 4 || len(v) > 260 {
		return false
	}
	dot := false
	for _, c := range v {
		switch {
		case c == '.':
			dot = true
		case c == '-' || c == ':' || c == '[' || c == ']' || c == '_' || c == '*':
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return dot || bytes.Count(v, []byte{':'}) >= 2
}

// splitHostPort accepts host, host:port, [v6]:port and bare v6.
func splitHostPort(s string) (string, uint16) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, _ := strconv.ParseUint(p, 10, 16)
		return h, uint16(n)
	}
	return strings.Trim(s, "[]"), 0
}

// hostValue handles a host name, IP or host:port setting.
func (st *fileState) hostValue(it *item, kc keyClass) {
	for _, part := range bytes.Split(it.val, []byte{','}) {
		part = bytes.TrimSpace(part)
		if !looksLikeHostValue(part) {
			continue
		}
		h, port := splitHostPort(string(part))
		if _, err := netip.ParseAddr(h); err != nil && !strings.Contains(h, ".") {
			continue
		}
		off := bytes.Index(it.val, part)
		st.host(it, kc, h, port, off, off+len(part), "")
	}
}

// host classifies one destination found in a value; for production hosts it
// reports the setting (endpoint), for providers it records a marker.
func (st *fileState) host(it *item, kc keyClass, h string, port uint16, start, end int, scheme string) hostClass {
	cls, prov := st.d.c.classifyHost(h, port)
	switch cls {
	case hostProduction:
		s := &st.scopes[st.resolve(it.scope)]
		s.conns = append(s.conns, conn{prefix: connPrefix(st.keyBuf), line: it.line, host: h})
		if scheme == "" {
			r := st.d.rule[RuleEndpoint]
			f := st.newFinding(r, it, start, end, "points at production host "+h)
			f.Redacted = h
			st.report(f)
		}
	case hostLive:
		st.addMarker(it.scope, marker{prod: true, provider: prov, line: it.line, what: "live endpoint " + h})
	case hostSandbox:
		if prov == "" {
			prov = providerInName(h)
		}
		st.addMarker(it.scope, marker{prod: false, provider: prov, line: it.line, what: "sandbox endpoint " + h})
	}
	return cls
}

func providerInName(h string) string {
	h = strings.ToLower(h)
	for _, p := range knownProviders {
		if strings.Contains(h, p) {
			return p
		}
	}
	return ""
}

// urls finds URLs, JDBC strings and DSNs in a value.
func (st *fileState) urls(it *item, kc keyClass, _ *Rule) bool {
	v := it.val
	handled := false
	jdbc := bytes.Contains(v, []byte("jdbc:"))
	if jdbc {
		for _, loc := range reJDBC.FindAllIndex(v, -1) {
			if st.jdbc(it, kc, loc[0], loc[1]) {
				handled = true
			}
		}
	}
	if bytes.Contains(v, []byte("://")) {
		for _, loc := range reURL.FindAllIndex(v, -1) {
			if loc[0] >= 5 && bytes.HasSuffix(v[:loc[0]], []byte("jdbc:")) {
				continue
			}
			if jdbc && insideJDBC(v, loc[0]) {
				continue
			}
			raw := string(v[loc[0]:loc[1]])
			scheme, pw, hosts := parseAuthority(raw)
			for _, hp := range hosts {
				h, p := splitHostPort(hp)
				if st.db(it, kc, scheme, h, p, pw, loc[0], loc[1]) {
					handled = true
				}
			}
		}
	}
	if bytes.Contains(v, []byte("@tcp(")) {
		for _, sm := range reGoDSN.FindAllSubmatchIndex(v, -1) {
			h, p := splitHostPort(string(v[sm[6]:sm[7]]))
			pw := ""
			if sm[4] >= 0 {
				pw = string(v[sm[4]:sm[5]])
			}
			if st.db(it, kc, "mysql", h, p, pw, sm[0], sm[1]) {
				handled = true
			}
		}
	}
	if bytes.Contains(v, []byte("host=")) {
		if sm := reLibpq.FindSubmatchIndex(v); sm != nil {
			pw := ""
			if pm := reLibpqPass.FindSubmatch(v); pm != nil {
				pw = string(pm[1])
			}
			if st.db(it, kc, "postgres", string(v[sm[2]:sm[3]]), 0, pw, 0, len(v)) {
				handled = true
			}
		}
	}
	return handled
}

// firstField is s up to the first of the separator bytes.
func firstField(s, seps string) string {
	if i := strings.IndexAny(s, seps); i >= 0 {
		return s[:i]
	}
	return s
}

func insideJDBC(v []byte, at int) bool {
	i := bytes.LastIndex(v[:at], []byte("jdbc:"))
	return i >= 0 && !bytes.ContainsAny(v[i:at], " \t\"'")
}

// parseAuthority splits scheme://[user[:password]@]host[:port][,host...]/...
// by hand: passwords in configuration are often not percent-encoded ('#',
// '?', '/' in them), which net/url rejects or misreads. The authority ends
// at the first '/' after the last '@' (or after "://" when there is none).
func parseAuthority(raw string) (scheme, password string, hosts []string) {
	i := strings.Index(raw, "://")
	scheme = strings.ToLower(raw[:i])
	rest := raw[i+3:]
	hostPart := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		if c := strings.IndexByte(userinfo, ':'); c >= 0 {
			password = userinfo[c+1:]
		}
		hostPart = rest[at+1:]
	}
	hostPart = firstField(hostPart, "/?#")
	for _, h := range strings.Split(hostPart, ",") {
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > 1 {
		hosts = hosts[:1] // mongodb://a,b,c: the first host names the cluster
	}
	return scheme, password, hosts
}

// jdbc parses jdbc:<sub>://host[:port][/db][?k=v&...] and the ;k=v,
// @host:port forms.
func (st *fileState) jdbc(it *item, kc keyClass, start, end int) bool {
	s := string(it.val[start:end])
	rest := s[len("jdbc:"):]
	sub, after, _ := strings.Cut(rest, ":")
	var hostport string
	switch {
	case strings.HasPrefix(after, "//"):
		hostport = after[2:]
	case strings.Contains(after, "@"): // oracle:thin:@host:port:sid or @//host:port/svc
		hostport = strings.TrimPrefix(after[strings.IndexByte(after, '@')+1:], "//")
	default:
		return false
	}
	hostport = firstField(hostport, "/;?,")
	if at := strings.LastIndexByte(hostport, '@'); at >= 0 {
		hostport = hostport[at+1:]
	}
	h, p := splitHostPort(hostport)
	if strings.Count(hostport, ":") == 2 && !strings.Contains(hostport, "[") { // oracle host:port:sid
		parts := strings.Split(hostport, ":")
		h = parts[0]
		n, _ := strconv.ParseUint(parts[1], 10, 16)
		p = uint16(n)
	}
	pw := ""
	lower := strings.ToLower(s)
	for _, k := range []string{"password=", "pwd="} {
		if i := strings.Index(lower, k); i >= 0 {
			pw = firstField(s[i+len(k):], "&; ")
			break
		}
	}
	if pw == "" {
		if i := strings.Index(after, "//"); i >= 0 {
			if at := strings.LastIndexByte(strings.SplitN(after[i+2:], "/", 2)[0], '@'); at >= 0 {
				if c := strings.IndexByte(after[i+2:i+2+at], ':'); c >= 0 {
					pw = after[i+2+c+1 : i+2+at]
				}
			}
		}
	}
	return st.db(it, kc, sub, h, p, pw, start, end)
}

// db judges one URL-like destination. Database and broker URLs with a
// production host are findings (secret with an inline password, endpoint
// otherwise); other URLs only mark their block. It reports whether the URL
// was a database/broker URL (so generic rules skip the value).
func (st *fileState) db(it *item, kc keyClass, scheme, h string, port uint16, pw string, start, end int) bool {
	if h == "" {
		return false
	}
	isDB := dbSchemes[scheme] || scheme != "" && !strings.HasPrefix(scheme, "http") && !strings.HasPrefix(scheme, "ws") && !strings.HasPrefix(scheme, "ftp") && !strings.HasPrefix(scheme, "file") && !strings.HasPrefix(scheme, "s3") && !strings.HasPrefix(scheme, "git") && !strings.HasPrefix(scheme, "ssh") && dbLike(scheme)
	if !isDB {
		st.host(it, kc, h, port, start, end, "")
		return false
	}
	cls := st.host(it, kc, h, port, start, end, scheme)
	if cls != hostProduction {
		return true
	}
	r := st.d.rule[RuleDatabaseURL]
	f := st.newFinding(r, it, start, end, "")
	f.Redacted = redactURL(string(it.val[start:end]), pw)
	if pw != "" && !isPlaceholder([]byte(pw)) && !isReferenceValue([]byte(pw)) {
		f.Message = fmt.Sprintf("%s URL with a password for production host %s", scheme, h)
		f.Kind = KindSecret
	} else {
		f.Message = fmt.Sprintf("%s URL points at production host %s (no literal password)", scheme, h)
		f.Kind = KindEndpoint
		f.Severity = SeverityMedium
	}
	st.report(f)
	return true
}

func dbLike(scheme string) bool {
	for s, isDB := range dbSchemes {
		if isDB && strings.Contains(scheme, s) {
			return true
		}
	}
	return false
}

// redactURL replaces the password (and anything after a password= key).
func redactURL(s, pw string) string {
	if pw != "" {
		s = strings.ReplaceAll(s, pw, "****")
	}
	return s
}

// keyed runs the rules that are selected by the setting's name.
func (st *fileState) keyed(it *item, kc keyClass) {
	v := it.val
	d := st.d
	if kc.provider == "mailgun" {
		if loc := reMailgunV2.FindIndex(v); loc != nil && !isPlaceholder(v[loc[0]:loc[1]]) {
			r := d.rule[RuleMailgun]
			st.defer_(r, r.Provider, it.scope, st.newFinding(r, it, loc[0], loc[1], "Mailgun API key"))
			return
		}
	}
	if kc.provider == "postmark" && reUUID.Match(v) {
		r := d.rule[RulePostmark]
		st.defer_(r, r.Provider, it.scope, st.newFinding(r, it, 0, len(v), "Postmark server token"))
		return
	}
	if !kc.secret || !credentialLike(v) {
		return
	}
	k := st.keyBuf // lower-case key from classifyKey
	var r *Rule
	prov := kc.provider
	switch {
	case prov == "paypal":
		r = d.rule[RulePayPalSecret]
	case prov == "twilio" && reHex32.Match(v):
		r = d.rule[RuleTwilioAuthToken]
	case (prov == "aws" || hasAny(k, "secret_access_key", "secretaccesskey", "secret-access-key")) && reAWSSecret.Match(v):
		r, prov = d.rule[RuleAWSSecret], "aws"
	default:
		r = d.rule[RuleGeneric]
	}
	st.defer_(r, prov, it.scope, st.newFinding(r, it, 0, len(v), ""))
	c := &st.deferred[len(st.deferred)-1]
	if r.ID == RuleGeneric {
		c.prefix = connPrefix(k)
	} else {
		c.prefix, c.paired = pairPrefix(k), true
	}
}

// pairSuffixes end the names of paired settings (an access key id and its
// secret, an account SID and its auth token); what comes before names the
// pair (PROD_AWS_ACCESS_KEY_ID and PROD_AWS_SECRET_ACCESS_KEY: "prod_aws").
// Longer words first.
var pairSuffixes = []string{"secret_access_key", "secret-access-key", "secretaccesskey", "access_key_id", "access-key-id",
	"accesskeyid", "account_sid", "account-sid", "accountsid", "auth_token", "auth-token", "authtoken", "secret_key",
	"secretkey", "access_key", "accesskey", "key_id", "keyid", "secret", "token", "sid", "key", "id"}

// pairPrefix is a lower-case key without its pair suffix and separators.
func pairPrefix(k []byte) string {
	for _, r := range pairSuffixes {
		if bytes.HasSuffix(k, []byte(r)) {
			k = k[:len(k)-len(r)]
			break
		}
	}
	return string(bytes.TrimRight(k, "_-. "))
}

// roleSuffixes end setting names that say what part of a connection they
// hold; what comes before is the connection's name (DB_HOST, DB_PASSWORD:
// "db"; spring.datasource.url, spring.datasource.password:
// "spring.datasource"). Longer words first.
var roleSuffixes = []string{"hostname", "username", "password", "passwd", "address", "endpoint", "secret", "server",
	"token", "host", "user", "addr", "pass", "pwd", "dsn", "url", "uri", "key"}

// connPrefix is a lower-case key without its role suffix and separators.
func connPrefix(k []byte) string {
	for _, r := range roleSuffixes {
		if bytes.HasSuffix(k, []byte(r)) {
			k = k[:len(k)-len(r)]
			break
		}
	}
	return string(bytes.TrimRight(k, "_-. "))
}

// credentialLike: long enough, no spaces, not a path, URL, number, boolean
// or host name, and not a placeholder.
func credentialLike(v []byte) bool {
	if len(v) < 8 || len(v) > 4096 || bytes.ContainsAny(v, " \t\n") {
		return false
	}
	if bytes.Contains(v, []byte("://")) || isPathLike(v) {
		return false
	}
	classes := 0
	var lo, up, dig, oth bool
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z':
			lo = true
		case 'A' <= c && c <= 'Z':
			up = true
		case '0' <= c && c <= '9':
			dig = true
		default:
			oth = true
		}
	}
	for _, b := range []bool{lo, up, dig, oth} {
		if b {
			classes++
		}
	}
	if classes < 2 || !dig && !oth {
		return false
	}
	if looksLikeHostValue(v) && bytes.Count(v, []byte{'.'}) >= 1 && !dig {
		return false
	}
	return !isPlaceholder(v)
}

// isPathLike: /run/secrets/x, ./key.pem, ~/.aws/credentials, not
// "/mQRSua72zX1lUJ..." (a base64 secret may start with a slash).
func isPathLike(v []byte) bool {
	if !(v[0] == '/' || bytes.HasPrefix(v, []byte("./")) || bytes.HasPrefix(v, []byte("../")) || bytes.HasPrefix(v, []byte("~/"))) {
		return false
	}
	if bytes.ContainsAny(v, "+=") {
		return false
	}
	// Path segments are words; a random string's "segments" are not.
	for _, seg := range bytes.Split(bytes.Trim(v, "/.~"), []byte{'/'}) {
		digits, upper := 0, 0
		for _, c := range seg {
			switch {
			case '0' <= c && c <= '9':
				digits++
			case 'A' <= c && c <= 'Z':
				upper++
			}
		}
		if len(seg) > 12 && digits > 0 && upper > 0 {
			return false
		}
	}
	return true
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
// connection prefix.
func (st *fileState) connection(scope int32, prefix string) (conn, bool) {
	for _, c := range st.scopes[st.resolve(scope)].conns {
		if c.prefix == prefix {
			return c, true
		}
	}
	return conn{}, false
}

// decodeBase64 decodes Kubernetes Secret data (standard base64, padding
// optional, line breaks tolerated).
func decodeBase64(v []byte) ([]byte, error) {
	v = bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, v)
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(out, v)
	if err != nil {
		raw := bytes.TrimRight(v, "=")
		out = make([]byte, base64.RawStdEncoding.DecodedLen(len(raw)))
		n, err = base64.RawStdEncoding.Decode(out, raw)
	}
	return out[:n], err
}
