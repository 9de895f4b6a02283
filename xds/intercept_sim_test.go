package xds

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/plan"
)

// simRequest is one HTTP request inside an intercepted TLS connection.
// headers are lower-case names, values in the order sent.
type simRequest struct {
	host    string
	method  string
	path    string
	headers map[string][]string
}

// simulateIntercept follows Envoy through an intercepted TLS connection
// and one request on it, on our resources, and returns the action
// ("allow", "report", "deny", "redirect", or "reject" for a request Envoy
// refuses before routing) and the deciding rule's ID. Each step cites the
// Envoy source it models.
func simulateIntercept(t *testing.T, res *Resources, c simConn, r simRequest) (string, string) {
	t.Helper()
	chain := selectChain(t, res.Listeners[0], c)
	ts := chain.GetTransportSocket()
	if ts == nil {
		// Not terminated: the connection-level decision (a deny chain).
		return simulate(t, res, c)
	}
	// The chain terminates TLS with the secrets SDS delivers from the same
	// snapshot (source/common/secret/sds_api.cc: the listener waits for
	// them; a missing one keeps the listener from warming).
	dtc := &tlsv3.DownstreamTlsContext{}
	require.NoError(t, ts.GetTypedConfig().UnmarshalTo(dtc))
	require.Equal(t, []string{"h2", "http/1.1"}, dtc.GetCommonTlsContext().GetAlpnProtocols())
	for _, sds := range dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
		require.NotNil(t, sds.GetSdsConfig().GetAds(), "secrets come over ADS")
		require.True(t, hasSecret(res, sds.GetName()), "secret %s is in the snapshot", sds.GetName())
	}
	h := &hcmv3.HttpConnectionManager{}
	require.Len(t, chain.Filters, 1)
	require.NoError(t, chain.Filters[0].GetTypedConfig().UnmarshalTo(h))
	var rc *routev3.RouteConfiguration
	for _, x := range res.Routes {
		if x.Name == h.GetRds().GetRouteConfigName() {
			rc = x
		}
	}
	require.NotNil(t, rc)

	// Path normalisation before routing
	// (ConnectionManagerUtility::maybeNormalizePath in
	// source/common/http/conn_manager_utility.cc: the escaped-slashes
	// action, PathUtil::canonicalPath, then PathUtil::mergeSlashes in
	// source/common/http/path_utility.cc). With the settings the
	// translation writes, the result is plan.NormalizePath's by the
	// contract the two share (requireEnvoyPathSettings checks the
	// settings; policy/plan/path.go cites the canonicaliser rule by rule).
	// Of the paths NormalizePath refuses, Envoy refuses some itself with
	// 400 before any route (envoyRefusesPath); the others it passes on
	// unchanged, and the route table must deny them.
	requireEnvoyPathSettings(t, h)
	path, ok := plan.NormalizePath(r.path)
	if !ok {
		if envoyRefusesPath(r.path) {
			return "reject", ""
		}
		path = r.path
	}
	authority := routingHost(h, r.host)
	vh := matchVHost(rc, strings.ToLower(authority))
	require.NotNil(t, vh, "no virtual host for %q", r.host)
	headers := map[string][]string{":method": {r.method}, ":authority": {authority}, ":path": {path}}
	for k, v := range r.headers {
		headers[k] = v
	}
	rt := firstRoute(t, vh, headers)
	if rt == nil {
		return "reject", "" // no route: Envoy answers 404 (NR), nothing is forwarded
	}
	return routeAction(t, rt)
}

// envoyRefusesPath: the path part of :path holds what Envoy refuses before
// routing: an escaped slash or backslash with
// path_with_escaped_slashes_action REJECT_REQUEST
// (ConnectionManagerUtility::maybeNormalizePath), a NUL, literal or
// escaped (INVALID in kPathCharLookup,
// source/common/chromium_url/url_canon_path.cc: canonicalPath fails), or a
// "#" anywhere in :path (maybeNormalizePath, http_reject_path_with_fragment).
func envoyRefusesPath(raw string) bool {
	p, _, _ := strings.Cut(raw, "?")
	lower := strings.ToLower(p)
	return strings.ContainsAny(raw, "#") || strings.ContainsAny(p, "\x00") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00")
}

func hasSecret(res *Resources, name string) bool {
	for _, s := range res.Secrets {
		if s.Name == name {
			return true
		}
	}
	return false
}

// requireEnvoyPathSettings: the HCM normalises the path the way the model
// assumes (see pathNormalisation).
func requireEnvoyPathSettings(t *testing.T, h *hcmv3.HttpConnectionManager) {
	t.Helper()
	want := &hcmv3.HttpConnectionManager{}
	pathNormalisation(want)
	require.Equal(t, want.GetNormalizePath().GetValue(), h.GetNormalizePath().GetValue(), "normalize_path")
	require.Equal(t, want.GetMergeSlashes(), h.GetMergeSlashes(), "merge_slashes")
	require.Equal(t, want.GetPathWithEscapedSlashesAction(), h.GetPathWithEscapedSlashesAction(), "path_with_escaped_slashes_action")
}

// firstRoute is the first route of the virtual host whose match holds
// (VirtualHostImpl::getRouteFromEntries in
// source/common/router/config_impl.cc: routes in order, the first match
// wins).
func firstRoute(t *testing.T, vh *routev3.VirtualHost, headers map[string][]string) *routev3.Route {
	t.Helper()
	for _, rt := range vh.Routes {
		if routeMatches(t, rt.Match, headers) {
			return rt
		}
	}
	return nil
}

// routeMatches is RouteEntryImplBase::matchRoute (every header matcher
// holds: HeaderUtility::matchHeaders) and then the path specifier of the
// route's kind (PrefixRouteEntryImpl, PathRouteEntryImpl,
// RegexRouteEntryImpl ::matches), all in
// source/common/router/config_impl.cc. Path specifiers go through
// PathMatcher::match (source/common/common/matchers.cc), which drops the
// query and fragment first (PathUtil::removeQueryAndFragment); prefix and
// path honour case_sensitive (default true).
func routeMatches(t *testing.T, m *routev3.RouteMatch, headers map[string][]string) bool {
	t.Helper()
	for _, hm := range m.Headers {
		if !headerMatches(t, hm, headers) {
			return false
		}
	}
	path := headers[":path"][0]
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	ignoreCase := m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
	switch ps := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		return stringMatches(t, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: ps.Prefix}, IgnoreCase: ignoreCase}, path)
	case *routev3.RouteMatch_Path:
		return stringMatches(t, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ps.Path}, IgnoreCase: ignoreCase}, path)
	case *routev3.RouteMatch_SafeRegex:
		return fullMatch(t, ps.SafeRegex.GetRegex(), path)
	}
	t.Fatalf("path specifier not simulated: %v", m.PathSpecifier)
	return false
}

// headerMatches is one HeaderMatcher (HeaderUtility::matchHeaders and the
// HeaderData* classes of source/common/http/header_utility.{h,cc}): an
// absent header fails every matcher but present_match, which holds when the
// header is present; a present header's value is all its values joined
// with "," (HeaderUtility::getAllOfHeaderAsString); invert_match negates
// the outcome.
func headerMatches(t *testing.T, hm *routev3.HeaderMatcher, headers map[string][]string) bool {
	t.Helper()
	vals, present := headers[strings.ToLower(hm.Name)]
	var ok bool
	switch spec := hm.HeaderMatchSpecifier.(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		ok = present == spec.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		if !present {
			return false // absent: no match, inverted or not (treat_missing_header_as_empty unset)
		}
		ok = stringMatches(t, spec.StringMatch, strings.Join(vals, ","))
	default:
		t.Fatalf("header matcher not simulated: %v", hm)
	}
	return ok != hm.InvertMatch
}

// stringMatches is StringMatcherImpl::match (source/common/common/matchers.cc):
// exact and prefix compare ASCII case-insensitively with ignore_case
// (absl::EqualsIgnoreCase, absl::StartsWithIgnoreCase), safe_regex is an
// RE2 full match (fullMatch).
func stringMatches(t *testing.T, sm *matcherv3.StringMatcher, v string) bool {
	t.Helper()
	switch p := sm.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		if sm.IgnoreCase {
			return asciiEqualFold(v, p.Exact)
		}
		return v == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		if sm.IgnoreCase {
			return len(v) >= len(p.Prefix) && asciiEqualFold(v[:len(p.Prefix)], p.Prefix)
		}
		return strings.HasPrefix(v, p.Prefix)
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(t, p.SafeRegex.GetRegex(), v)
	}
	t.Fatalf("string matcher not simulated: %v", sm)
	return false
}

// asciiEqualFold folds ASCII letters only, as absl's ascii functions.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// routeAction reads what a route does: a 403 direct response is a deny, the
// intercept upstream an allow (a report when it adds the would-deny
// header), a sandbox cluster with the Host rewritten a redirect; the rule
// is the route name's, checked against the action.
func routeAction(t *testing.T, rt *routev3.Route) (string, string) {
	t.Helper()
	named, rule, _ := strings.Cut(rt.Name, "|")
	var action string
	switch {
	case rt.GetDirectResponse() != nil:
		require.EqualValues(t, 403, rt.GetDirectResponse().GetStatus())
		require.Contains(t, rt.GetDirectResponse().GetBody().GetInlineString(), `"rule":`)
		action = "deny"
	case rt.GetRoute().GetCluster() == InterceptUpstreamCluster:
		action = "allow"
		for _, h := range rt.ResponseHeadersToAdd {
			if h.Header.Key == WouldDenyHeader {
				action = "report"
			}
		}
	case strings.HasPrefix(rt.GetRoute().GetCluster(), "sandbox|"):
		require.NotEmpty(t, rt.GetRoute().GetHostRewriteLiteral())
		action = "redirect"
	default:
		t.Fatalf("route %s: action not simulated: %v", rt.Name, rt.Action)
	}
	require.Equal(t, named, action, "route %s: its name and its action agree", rt.Name)
	return action, rule
}

// TestInterceptMatchesDecideRequest: for random plans with request-level
// rules and random requests (method, path with every spelling Envoy
// normalises and some it refuses, headers including Basic credentials in
// both alphabets and repeated headers), the route the modelled Envoy picks
// from the generated configuration gives the action and rule of
// plan.DecideRequest, whose Request.Header is given repeated headers
// joined with "," as Envoy's matchers see them.
func TestInterceptMatchesDecideRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 3))
	const plans, requests = 60, 300
	compared := map[string]int{}
	for i := range plans {
		spec := randomInterceptSpec(rng)
		p, err := plan.Compile(spec)
		require.NoError(t, err, "plan %d: %+v", i, spec)
		res, err := TranslateSidecar(p, NodeSettings{Certificates: &testCerts{}})
		require.NoError(t, err)
		require.NoError(t, Validate(res))
		for range requests {
			r := randomRequest(rng)
			ip := netip.MustParseAddr("192.0.2.10")
			act, rule := simulateIntercept(t, res, simConn{ip: ip, port: 443, transport: "tls", sni: r.host}, r)
			d := p.DecideRequest(plan.Destination{Host: r.host, Port: 443, IP: ip}, plan.Request{Method: r.method, Path: r.path,
				Header: func(name string) (string, bool) {
					v, ok := r.headers[name]
					return strings.Join(v, ","), ok // as Envoy's matchers see repeated headers
				}})
			wantAct, wantRule := want(d.Decision), d.RuleID()
			if d.Request != nil {
				wantRule = d.Request.ID
			}
			msg := fmt.Sprintf("plan %d %+v\nrequest %+v", i, spec.Rules, r)
			if act == "reject" {
				// Envoy refuses a malformed request outright; the plan
				// denies it too (in report mode: would deny), unless the
				// rule does not look at requests (a redirect), where
				// refusing is fail-closed.
				if d.Request != nil {
					require.Contains(t, []string{"deny", "report"}, wantAct, "Envoy refuses the request: the plan must deny it too; %s", msg)
					require.Equal(t, plan.MalformedPathRuleID, d.Request.ID, msg)
				}
				compared["reject"]++
				continue
			}
			require.Equal(t, wantAct, act, msg)
			if rule != "" { // a grouped SNI chain (a host without interception) names no rule
				require.Equal(t, wantRule, rule, msg)
			}
			compared[act]++
		}
	}
	t.Logf("compared: %v", compared)
	for _, a := range []string{"allow", "deny", "redirect", "report"} {
		require.Positive(t, compared[a], "the generator must reach %s", a)
	}
}

var (
	simHosts   = []string{"api.stripe.com", "files.stripe.com", "api.twilio.com"}
	simMethods = []string{"GET", "POST", "DELETE", "PUT"}
	simUsers   = []string{"sk_live_51H", "sk_test_51H", "AC0123456789abcdef0123456789abcdef", "ac0123456789ABCDEF0123456789abcdef",
		"AC0123456789abcdef0123456789abcdeg", "sk_live", "", "rk_live_9"}
	simPaths = []string{"/v1/charges", "/V1/Charges", "/v1/charges/ch_1", "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
		"/2010-04-01/Accounts/AC99/Messages.json", "/v3/sandbox0123456789abcdef0123456789abcdef.mailgun.org/messages", "/v3/mg.example.com/messages", "/"}
)

// randomStringMatch is a condition on values like the given samples.
func randomStringMatch(rng *rand.Rand, samples []string, regexOK bool) *plan.StringMatch {
	s := samples[rng.IntN(len(samples))]
	cut := s[:rng.IntN(len(s)+1)]
	switch n := rng.IntN(4); {
	case n == 0:
		return &plan.StringMatch{Exact: s, IgnoreCase: rng.IntN(3) == 0}
	case n == 1 || !regexOK || cut == "":
		if cut == "" {
			cut = s
		}
		if cut == "" {
			return &plan.StringMatch{Exact: s}
		}
		return &plan.StringMatch{Prefix: cut, IgnoreCase: rng.IntN(3) == 0}
	default:
		return &plan.StringMatch{Regex: regexp.QuoteMeta(cut) + ".*"}
	}
}

func randomInterceptSpec(rng *rand.Rand) plan.Spec {
	spec := plan.Spec{Default: plan.ActionAllow}
	if rng.IntN(8) == 0 {
		spec.Mode = plan.ModeReport
	}
	actions := []plan.Action{plan.ActionAllow, plan.ActionDeny, plan.ActionRedirect}
	sandbox := &plan.Redirect{Host: "api.sandbox.example.net", TLS: true}
	authValues := []string{"Bearer sk_live_x", "Bearer sk_test_x", "Bearer rk_live_y", "Basic abc"}
	for h, host := range []string{"api.stripe.com", "*.stripe.com", "api.twilio.com"} {
		if rng.IntN(4) == 0 {
			continue
		}
		id := fmt.Sprintf("host%d", h)
		rp := &plan.RequestPolicy{Default: plan.RequestRule{ID: id + "/default", Action: actions[rng.IntN(2)], Reason: "default"}}
		for j := range rng.IntN(5) {
			rr := plan.RequestRule{ID: fmt.Sprintf("%s/r%d", id, j), Action: actions[rng.IntN(3)], Reason: "rule"}
			if rr.Action == plan.ActionRedirect {
				rr.Redirect = sandbox
			}
			if rng.IntN(3) == 0 {
				for _, m := range simMethods {
					if rng.IntN(2) == 0 {
						rr.Methods = append(rr.Methods, m)
					}
				}
			}
			if rng.IntN(2) == 0 {
				rr.Path = randomStringMatch(rng, simPaths, true)
			}
			for range rng.IntN(3) {
				switch rng.IntN(5) {
				case 0:
					rr.Headers = append(rr.Headers, plan.HeaderMatch{Name: "authorization", Value: randomStringMatch(rng, authValues, true)})
				case 1:
					rr.Headers = append(rr.Headers, plan.HeaderMatch{Name: "authorization", BasicUser: randomStringMatch(rng, simUsers[:5], false)})
				case 2:
					rr.Headers = append(rr.Headers, plan.HeaderMatch{Name: "x-token", Absent: true})
				case 3:
					rr.Headers = append(rr.Headers, plan.HeaderMatch{Name: "x-token"})
				default:
					rr.Headers = append(rr.Headers, plan.HeaderMatch{Name: "x-token", Value: randomStringMatch(rng, []string{"POSTMARK_API_TEST", "live-token"}, true)})
				}
			}
			rp.Rules = append(rp.Rules, rr)
		}
		r := plan.Rule{ID: id, Hosts: []string{host}, Action: plan.ActionAllow, Requests: rp}
		if rng.IntN(8) == 0 {
			r.Mode = plan.ModeReport
		}
		spec.Rules = append(spec.Rules, r)
	}
	return spec
}

// randomPathSpelling spells a path the ways clients and attackers do:
// doubled slashes, dot segments, escaped slashes and letters, a query.
func randomPathSpelling(rng *rand.Rand, p string) string {
	var b strings.Builder
	for i := range len(p) {
		c := p[i]
		switch {
		case c == '/' && rng.IntN(8) == 0:
			b.WriteString([]string{"//", "/./", "/x/../", "%2F", "%2f", "/%2e/", "\\", "/%zz", "/%4", "/%G1/", "/%5c", "/..;x/", "/.;/", "/%2e%2E;a/"}[rng.IntN(14)])
		case c >= 'a' && c <= 'z' && rng.IntN(20) == 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	if rng.IntN(4) == 0 {
		b.WriteString([]string{"?limit=1", "?x=/v1/charges", "?", "?a=%2F", "?%zz", "?a#b"}[rng.IntN(6)])
	}
	if rng.IntN(40) == 0 {
		return []string{"*", "v1/charges", "/v1/charges#x"}[rng.IntN(3)]
	}
	return b.String()
}

func randomRequest(rng *rand.Rand) simRequest {
	r := simRequest{host: simHosts[rng.IntN(len(simHosts))], method: simMethods[rng.IntN(len(simMethods))],
		path: randomPathSpelling(rng, simPaths[rng.IntN(len(simPaths))]), headers: map[string][]string{}}
	switch rng.IntN(6) {
	case 0:
		r.headers["authorization"] = []string{[]string{"Bearer sk_live_abc", "Bearer sk_test_abc", "bearer sk_test_abc", "Bearer rk_live_q", "Bearer "}[rng.IntN(5)]}
	case 1, 2:
		cred := simUsers[rng.IntN(len(simUsers))] + ":" + []string{"", "secret", "s:x"}[rng.IntN(3)]
		if rng.IntN(10) == 0 {
			cred = strings.ReplaceAll(cred, ":", "") // no password separator
		}
		enc := []byte(base64.StdEncoding.EncodeToString([]byte(cred)))
		if n := len(enc); rng.IntN(4) == 0 && n >= 2 && enc[n-1] == '=' {
			i := n - 2
			if enc[n-2] == '=' {
				i = n - 3
			}
			enc[i] = b64Alphabet[indexB64(enc[i])|1] // padding bits set: still decodes
		}
		r.headers["authorization"] = []string{[]string{"Basic ", "basic ", "BASIC ", "Basic  "}[rng.IntN(4)] + string(enc)}
	}
	if rng.IntN(3) == 0 {
		r.headers["x-token"] = []string{[]string{"POSTMARK_API_TEST", "postmark_api_test", "live-token", ""}[rng.IntN(4)]}
	}
	if v, ok := r.headers["authorization"]; ok && rng.IntN(10) == 0 {
		r.headers["authorization"] = append(v, "Bearer sk_live_second") // a second value riding along
	}
	return r
}

// outsideInterception is plan.Decide's decision as the sidecar enforces it
// where requests are not seen (plaintext HTTP; TLS without a staging CA):
// a rule with request-level rules denies, a would-deny in report mode
// (verdictOf).
func outsideInterception(p *plan.Plan, d plan.Decision) plan.Decision {
	if d.Rule.Requests == nil {
		return d
	}
	if p.Mode() == plan.ModeReport || d.Rule.Mode == plan.ModeReport {
		d.Action, d.WouldDeny = plan.ActionAllow, true
	} else {
		d.Action, d.WouldDeny = plan.ActionDeny, false
	}
	return d
}
