package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Request-level rules (HTTPS interception).
//
// A host rule with Requests is an interception rule: the sidecar terminates
// TLS for its hosts with a leaf minted by the staging CA and decides each
// HTTP request with DecideRequest. Connection-level enforcers (DNS, Decide)
// see the rule's Action, which the policy sets to allow for classes with a
// sidecar; classes without one never get Requests (the policy emits the
// catalog's fallback action for them instead).
//
// Semantics of the request decision (the one place they are defined):
//
//   - The host rule is found exactly as Decide finds it. When it has no
//     Requests, the request decision is the host decision.
//   - The path is put in normal form first (NormalizePath); a path that
//     cannot be is denied by MalformedPathRequestRule.
//   - The policy's rules are tried in order; the first whose conditions all
//     hold decides: Methods (any of, exact upper-case), Path (on the normal
//     path, without the query) and every HeaderMatch.
//   - A header is looked up by its lower-case name; its value is what the
//     caller's Request.Header gives: the first value, or, as Envoy's header
//     matchers see repeated headers, all values joined by ","
//     (HeaderUtility::getAllOfHeaderAsString). Rules that allow should match
//     whole values (Regex, Exact) so that a second value cannot ride along.
//   - BasicUser matches the user of an "Authorization: Basic" value: the
//     scheme case-insensitively, the credentials base64 (standard or URL
//     alphabet, padding absent or exact), the user up to the first ":" (all
//     of it without one). A value that is not such a credential never
//     matches a BasicUser condition.
//   - StringMatch follows Envoy's StringMatcher: Exact and Prefix compare
//     bytes (ASCII case folded with IgnoreCase); Regex is RE2 matching the
//     whole value.
//   - When no rule matches, the policy's Default decides; its ID is
//     "<host rule id>/default" when the policy leaves it empty.
//   - Report mode applies as for Decide: a report-mode plan or host rule
//     answers allow and sets WouldDeny when the request rule would have
//     denied or redirected.

// RequestPolicy makes a host rule an interception rule (see Rule.Requests).
type RequestPolicy struct {
	// Rules are tried in order; the first match wins.
	Rules []RequestRule `json:"rules"`
	// Default applies when no rule matches. Its conditions are ignored;
	// its ID is "<host rule id>/default" when empty.
	Default RequestRule `json:"default"`
}

// RequestRule is one request-level rule.
type RequestRule struct {
	ID string `json:"id"`
	// Methods are upper-case HTTP methods, any of; empty means any.
	Methods []string `json:"methods,omitempty"`
	// Path matches the normalised path (no query); nil means any.
	Path *StringMatch `json:"path,omitempty"`
	// Headers must all hold.
	Headers  []HeaderMatch `json:"headers,omitempty"`
	Action   Action        `json:"action"`
	Redirect *Redirect     `json:"redirect,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	// Credential names the kind of credential the rule recognises (e.g.
	// "stripe-live-secret-key"), for records; the credential's value never
	// leaves the decision.
	Credential string `json:"credential,omitempty"`
}

// HeaderMatch is a condition on one request header.
type HeaderMatch struct {
	// Name is the lower-case header name.
	Name string `json:"name"`
	// Value matches the raw header value; nil means the header is present.
	Value *StringMatch `json:"value,omitempty"`
	// BasicUser matches the decoded user of "Authorization: Basic"; only
	// with Name "authorization".
	BasicUser *StringMatch `json:"basic_user,omitempty"`
	// Absent requires the header not to be present.
	Absent bool `json:"absent,omitempty"`
}

// StringMatch is exactly one of Exact, Prefix and Regex (RE2, whole value),
// with Envoy StringMatcher semantics.
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
	// IgnoreCase folds ASCII case for Exact and Prefix; not with Regex.
	IgnoreCase bool `json:"ignore_case,omitempty"`

	re *regexp.Regexp // compiled Regex, anchored; set by CompileLayer
}

// Request is what DecideRequest needs of an HTTP request.
type Request struct {
	Method string
	// Path is the raw :path as sent (may hold a query, escapes, dot segments).
	Path string
	// Header returns the value of a header by lower-case name (see the
	// semantics above for repeated headers); nil means no headers.
	Header func(name string) (value string, ok bool)
}

// RequestDecision is the outcome of Plan.DecideRequest. The embedded
// Decision's Action and WouldDeny are the final ones (report mode applied);
// its Rule is the host rule.
type RequestDecision struct {
	Decision
	// Request is the request rule that decided (the policy's Default when
	// none matched); nil when the host rule has no Requests.
	Request *RequestRule
}

// MalformedPathRuleID is the ID of the request rule that denies a request
// whose path cannot be normalised (NormalizePath).
const MalformedPathRuleID = "malformed-path"

// MalformedPathRequestRule denies requests whose path cannot be normalised.
var MalformedPathRequestRule = RequestRule{
	ID:     MalformedPathRuleID,
	Action: ActionDeny,
	Reason: "the request path cannot be put in normal form (not origin form, an escaped slash, an invalid escape, a NUL or a fragment): refused (fail closed)",
}

// Intercepted reports whether the sidecar terminates TLS for r's hosts:
// r has request rules, or r redirects to a sandbox over TLS (re-originated
// with the sandbox's own SNI).
func (r *Rule) Intercepted() bool {
	return r.Requests != nil || r.Action == ActionRedirect && r.Redirect != nil && r.Redirect.TLS
}

// Intercepts returns the plan's intercepted host rules (Rule.Intercepted) in
// plan order (base, then overlay). Each rule's Hosts are only the host
// patterns it decides in this plan: a pattern another rule wins (an overlay
// exception for the exact host, say) is left out, and so is "*" (no leaf can
// name every host; such a rule stays a connection-level decision); a rule
// left with no pattern is left out. The rules must not be modified.
func (p *Plan) Intercepts() []*Rule {
	won := make(map[*Rule][]string)
	for _, e := range p.Entries() {
		if e.Kind == EntryHost && e.Pattern != "*" && e.Rule.Intercepted() && !slices.Contains(won[e.Rule], e.Pattern) {
			won[e.Rule] = append(won[e.Rule], e.Pattern)
		}
	}
	var out []*Rule
	for _, l := range []*Layer{p.base, p.overlay} {
		if l == nil {
			continue
		}
		for i := range l.rules {
			r := &l.rules[i]
			hosts, ok := won[r]
			if !ok {
				continue
			}
			if len(hosts) != len(r.Hosts) {
				c := *r
				c.Hosts = slices.DeleteFunc(slices.Clone(r.Hosts), func(h string) bool { return !slices.Contains(hosts, h) })
				r = &c
			}
			out = append(out, r)
		}
	}
	return out
}

// DecideRequest decides one HTTP request to d (see the request-level
// semantics above). It does not allocate for a path already in normal form
// and rules without Regex.
func (p *Plan) DecideRequest(d Destination, r Request) RequestDecision {
	hd := p.Decide(d)
	rp := hd.Rule.Requests
	if rp == nil {
		return RequestDecision{Decision: hd}
	}
	rr := rp.match(r)
	out := RequestDecision{Decision: Decision{Action: rr.Action, Matched: rr.Action, Rule: hd.Rule}, Request: rr}
	if rr.Action != ActionAllow && (p.mode == ModeReport || hd.Rule.Mode == ModeReport) {
		out.Action = ActionAllow
		out.WouldDeny = true
	}
	return out
}

// RuleID names the deciding rules: "<host rule>" or "<host rule> >
// <request rule>".
func (d RequestDecision) RuleID() string {
	if d.Request == nil {
		return d.Rule.ID
	}
	return d.Rule.ID + " > " + d.Request.ID
}

// Reason is the deciding request rule's reason, or the host rule's.
func (d RequestDecision) Reason() string {
	if d.Request != nil && d.Request.Reason != "" {
		return d.Request.Reason
	}
	return d.Rule.Reason
}

// Target is the sandbox target of a redirect decision, nil otherwise.
func (d RequestDecision) Target() *Redirect {
	if d.Request == nil {
		return d.Decision.Target()
	}
	if d.Action != ActionRedirect {
		return nil
	}
	return d.Request.Redirect
}

// MarshalJSON renders a request decision for records and `policy eval -o
// json`. It holds the credential kind, never a value.
func (d RequestDecision) MarshalJSON() ([]byte, error) {
	var req, cred string
	if d.Request != nil {
		req, cred = d.Request.ID, d.Request.Credential
	}
	return json.Marshal(struct {
		Action      Action    `json:"action"`
		Matched     Action    `json:"matched_action"`
		Rule        string    `json:"rule"`
		RequestRule string    `json:"request_rule,omitempty"`
		Credential  string    `json:"credential,omitempty"`
		Reason      string    `json:"reason,omitempty"`
		Category    string    `json:"category,omitempty"`
		Redirect    *Redirect `json:"redirect,omitempty"`
		WouldDeny   bool      `json:"would_deny,omitempty"`
	}{d.Action, d.Matched, d.Rule.ID, req, cred, d.Reason(), d.Rule.Category, d.Target(), d.WouldDeny})
}

// CredentialFingerprint identifies a credential value in records without
// revealing it: the first 12 hex digits of its SHA-256.
func CredentialFingerprint(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:6])
}

// CredentialValue returns the value the deciding rule's credential was read
// from, for CredentialFingerprint only: never log or record it. It is the
// decoded Basic user, the token of any other Authorization scheme ("Bearer
// sk_live_..." gives "sk_live_...", so a key has one fingerprint however it
// is sent), or the first header condition's value. ok is false when the rule
// names no credential or r lacks the header.
func (d RequestDecision) CredentialValue(r Request) (value string, ok bool) {
	if d.Request == nil || d.Request.Credential == "" || r.Header == nil {
		return "", false
	}
	for _, h := range d.Request.Headers {
		if h.Absent {
			continue
		}
		v, present := r.Header(h.Name)
		if !present {
			return "", false
		}
		if h.BasicUser != nil {
			var buf [maxBasicLen]byte
			u, ok := basicUser(v, &buf)
			return string(u), ok
		}
		if _, token, ok := strings.Cut(v, " "); ok && h.Name == "authorization" {
			return strings.TrimLeft(token, " "), true
		}
		return v, true
	}
	return "", false
}

func (rp *RequestPolicy) match(r Request) *RequestRule {
	path, ok := NormalizePath(r.Path)
	if !ok {
		return &MalformedPathRequestRule
	}
	for i := range rp.Rules {
		if rp.Rules[i].matches(r, path) {
			return &rp.Rules[i]
		}
	}
	return &rp.Default
}

func (rr *RequestRule) matches(r Request, path string) bool {
	if len(rr.Methods) > 0 && !slices.Contains(rr.Methods, r.Method) {
		return false
	}
	if rr.Path != nil && !rr.Path.Match(path) {
		return false
	}
	for i := range rr.Headers {
		if !rr.Headers[i].matches(r) {
			return false
		}
	}
	return true
}

func (h *HeaderMatch) matches(r Request) bool {
	var v string
	ok := false
	if r.Header != nil {
		v, ok = r.Header(h.Name)
	}
	switch {
	case h.Absent:
		return !ok
	case !ok:
		return false
	case h.BasicUser != nil:
		var buf [maxBasicLen]byte
		u, ok := basicUser(v, &buf)
		return ok && h.BasicUser.matchBytes(u)
	case h.Value != nil:
		return h.Value.Match(v)
	}
	return true
}

// Match reports whether s matches (Envoy StringMatcher semantics). The
// regex of a StringMatch that did not go through CompileLayer is compiled
// on every call.
func (m *StringMatch) Match(s string) bool {
	switch {
	case m.Regex != "":
		re := m.re
		if re == nil {
			var err error
			if re, err = compileFull(m.Regex); err != nil {
				return false
			}
		}
		return re.MatchString(s)
	case m.IgnoreCase:
		if m.Prefix != "" {
			return len(s) >= len(m.Prefix) && asciiEqualFold(s[:len(m.Prefix)], m.Prefix)
		}
		return asciiEqualFold(s, m.Exact)
	case m.Prefix != "":
		return strings.HasPrefix(s, m.Prefix)
	}
	return s == m.Exact
}

// matchBytes is Match on a byte slice without converting it (the compiler
// does not copy a []byte converted to string for a comparison).
func (m *StringMatch) matchBytes(b []byte) bool {
	switch {
	case m.Regex != "":
		return m.Match(string(b))
	case m.IgnoreCase && m.Prefix != "":
		return len(b) >= len(m.Prefix) && asciiEqualFold(b[:len(m.Prefix)], m.Prefix)
	case m.IgnoreCase:
		return asciiEqualFold(b, m.Exact)
	case m.Prefix != "":
		return len(b) >= len(m.Prefix) && string(b[:len(m.Prefix)]) == m.Prefix
	}
	return string(b) == m.Exact
}

// asciiEqualFold compares folding ASCII letters only, as Envoy's
// ignore_case does (absl::EqualsIgnoreCase): strings.EqualFold would also
// fold "ſ" to "s" and "K" (Kelvin) to "k".
func asciiEqualFold[S ~string | ~[]byte](a S, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func compileFull(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// maxBasicLen bounds the decoded Basic credentials DecideRequest looks at;
// longer ones never match a BasicUser condition.
const maxBasicLen = 384

// basicUser decodes the user of an "Authorization: Basic" value into buf.
func basicUser(v string, buf *[maxBasicLen]byte) ([]byte, bool) {
	const scheme = "basic"
	if len(v) <= len(scheme) || !asciiEqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return nil, false
	}
	enc := strings.TrimLeft(v[len(scheme):], " ")
	n, ok := decodeBase64(enc, buf)
	if !ok {
		return nil, false
	}
	for i := 0; i < n; i++ {
		if buf[i] == ':' {
			return buf[:i], true
		}
	}
	// RFC 7617 wants user-id ":" password; a server may take credentials
	// without the colon as the user (curl -u KEY sends "KEY:", not all
	// clients do), so they are matched as the user too.
	return buf[:n], true
}

// decodeBase64 decodes standard or URL-alphabet base64, padding optional,
// into buf without allocating.
func decodeBase64(s string, buf *[maxBasicLen]byte) (int, bool) {
	// Padding is either absent or exactly what the length needs.
	if n := len(s); n >= 4 && n%4 == 0 && s[n-1] == '=' {
		s = s[:n-1]
		if s[n-2] == '=' {
			s = s[:n-2]
		}
	}
	if len(s)%4 == 1 || len(s)*3/4 > len(buf) {
		return 0, false
	}
	n, acc, bits := 0, uint32(0), 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case 'A' <= c && c <= 'Z':
			v = c - 'A'
		case 'a' <= c && c <= 'z':
			v = c - 'a' + 26
		case '0' <= c && c <= '9':
			v = c - '0' + 52
		case c == '+' || c == '-':
			v = 62
		case c == '/' || c == '_':
			v = 63
		default:
			return 0, false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			buf[n] = byte(acc >> bits)
			n++
		}
	}
	return n, true
}

// httpMethods are the methods a request rule may name.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// normalizeRequests validates a host rule's request policy and returns a
// copy with compiled regexes and the default's ID filled in.
func normalizeRequests(hostID string, in *RequestPolicy) (*RequestPolicy, error) {
	rp := &RequestPolicy{Rules: make([]RequestRule, len(in.Rules)), Default: in.Default}
	var errs []error
	ids := map[string]int{}
	for i := range in.Rules {
		rr, err := normalizeRequestRule(&in.Rules[i], true)
		if err != nil {
			errs = append(errs, fmt.Errorf("requests.rules[%d] (id %q): %w", i, in.Rules[i].ID, err))
		}
		if j, dup := ids[rr.ID]; dup && rr.ID != "" {
			errs = append(errs, fmt.Errorf("requests.rules[%d]: id %q is already used by requests.rules[%d]", i, rr.ID, j))
		}
		ids[rr.ID] = i
		rp.Rules[i] = rr
	}
	if rp.Default.ID == "" {
		rp.Default.ID = hostID + "/default"
	}
	def, err := normalizeRequestRule(&rp.Default, false)
	if err != nil {
		errs = append(errs, fmt.Errorf("requests.default: %w", err))
	}
	rp.Default = def
	return rp, errors.Join(errs...)
}

func normalizeRequestRule(in *RequestRule, conditions bool) (RequestRule, error) {
	r := *in
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("id: must not be empty"))
	}
	if r.Action > ActionRedirect {
		errs = append(errs, fmt.Errorf("action: unknown action %d", r.Action))
	}
	if t, err := normalizeRedirect(r.Action, r.Redirect, false); err != nil {
		errs = append(errs, err)
	} else {
		r.Redirect = t
	}
	if !conditions {
		r.Methods, r.Path, r.Headers = nil, nil, nil
		return r, errors.Join(errs...)
	}
	for j, m := range r.Methods {
		if !slices.Contains(httpMethods, m) {
			errs = append(errs, fmt.Errorf("methods[%d]: unknown method %q (want one of %s, upper-case)", j, m, strings.Join(httpMethods, ", ")))
		}
	}
	if r.Path != nil {
		m, err := normalizeStringMatch(r.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("path: %w", err))
		}
		r.Path = m
	}
	r.Headers = slices.Clone(in.Headers)
	for j := range r.Headers {
		h := &r.Headers[j]
		field := fmt.Sprintf("headers[%d]", j)
		if h.Name == "" || h.Name != strings.ToLower(h.Name) || strings.ContainsAny(strings.TrimPrefix(h.Name, ":"), " \t:") {
			errs = append(errs, fmt.Errorf("%s.name: %q must be a lower-case header name", field, h.Name))
		}
		set := 0
		for _, b := range []bool{h.Value != nil, h.BasicUser != nil, h.Absent} {
			if b {
				set++
			}
		}
		if set > 1 {
			errs = append(errs, fmt.Errorf("%s: at most one of value, basic_user and absent", field))
		}
		if h.BasicUser != nil && h.Name != "authorization" {
			errs = append(errs, fmt.Errorf("%s.basic_user: only on the authorization header, not %q", field, h.Name))
		}
		for _, sm := range []struct {
			name string
			m    **StringMatch
		}{{"value", &h.Value}, {"basic_user", &h.BasicUser}} {
			if *sm.m == nil {
				continue
			}
			m, err := normalizeStringMatch(*sm.m)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", field, sm.name, err))
			}
			*sm.m = m
		}
	}
	return r, errors.Join(errs...)
}

func normalizeStringMatch(in *StringMatch) (*StringMatch, error) {
	m := *in
	set := 0
	for _, s := range []string{m.Exact, m.Prefix, m.Regex} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return &m, errors.New("exactly one of exact, prefix and regex must be set")
	}
	if m.Regex != "" {
		if m.IgnoreCase {
			return &m, errors.New("ignore_case: not with regex (use (?i) in the expression)")
		}
		re, err := compileFull(m.Regex)
		if err != nil {
			return &m, fmt.Errorf("regex %q: %w", m.Regex, err)
		}
		m.re = re
	}
	return &m, nil
}

// CheckRequestRule validates one request rule as CompileLayer would (for
// catalog validation, which names the file and line); the error names the
// rule's field.
func CheckRequestRule(r *RequestRule) error {
	_, err := normalizeRequestRule(r, true)
	return err
}
