package secretscan

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

func endpointRules() []*Rule {
	return []*Rule{
		{
			ID: RuleEndpoint, Title: "Setting pointing at a production host or network", Provider: "",
			Severity: SeverityMedium, Kind: KindEndpoint, Env: envIdentity, prefix: 0,
			Format: "a URL, host name or IP whose host is in a production zone or CIDR",
			TruePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.example.com/v2\n"},
				{"app.env", "CACHE_HOST=10.20.9.9\n"},
			},
			FalsePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.staging.example.com/v2\n"},
			},
		},
	}
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
