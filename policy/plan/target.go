package plan

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// destinationForms is the help text of every destination parse error.
const destinationForms = "want host[:port], IPv4[:port], IPv6, [IPv6]:port or a URL " +
	"(https://api.stripe.com/v1/charges, smtp://smtp.example.com:587, xds:///payments.prod:443, dns://api.stripe.com)"

// schemePorts are the URL schemes ParseDestination understands, with their
// default port and the protocol they imply.
var schemePorts = map[string]struct {
	port  uint16
	proto string
}{
	"http":  {80, "http"},
	"ws":    {80, "http"},
	"https": {443, "tls"},
	"wss":   {443, "tls"},
	"smtp":  {25, "smtp"},
	"smtps": {465, "tls"},
	"xds":   {0, "grpc"},
	"dns":   {0, ProtocolDNS}, // dns://name: a DNS lookup of name
}

// ParseDestination parses a destination as an operator or a client writes
// it: a URL (the scheme gives the port when the URL has none: https -> 443;
// path, query and user are ignored; for xds:///target the target is the
// authority; dns://name is a DNS lookup of name, with no port, which is how
// dnsguard asks), or an authority (see ParseAuthority). Addresses come out in
// canonical form (ParseAddr), names normalised (NormalizeHost). Anything
// else is refused with an error that shows the accepted forms.
func ParseDestination(s string) (Destination, error) {
	if s == "" {
		return Destination{}, fmt.Errorf("empty destination (%s)", destinationForms)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ParseAuthority(s)
	}
	sp, known := schemePorts[strings.ToLower(scheme)]
	if !known {
		return Destination{}, fmt.Errorf("destination %q: unknown URL scheme %q (%s)", s, scheme, destinationForms)
	}
	u, err := url.Parse(s)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w (%s)", s, err, destinationForms)
	}
	auth := u.Host
	if sp.proto == "grpc" {
		// xds:///name[:port]: the target is the path; an authority
		// (xds://server/name) names the control plane, not the target.
		auth = strings.TrimPrefix(u.Path, "/")
		if u.Host != "" && auth == "" {
			return Destination{}, fmt.Errorf("destination %q: an xds target is xds:///name[:port] (%s)", s, destinationForms)
		}
	}
	if auth == "" {
		return Destination{}, fmt.Errorf("destination %q: no host in %q (%s)", s, rest, destinationForms)
	}
	d, err := ParseAuthority(auth)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w", s, err)
	}
	if d.Port == 0 {
		d.Port = sp.port
	}
	d.Protocol = sp.proto
	return d, nil
}

// ParseAuthority parses a Host header, an HTTP/2 :authority, a TLS server
// name or the authority of a URL: host, host:port, an IPv4 address in any
// inet_aton spelling with an optional :port, a bare IPv6 address or
// [IPv6]:port. The host is an address in canonical form (ParseAddr) or a
// normalised name; wildcards, names IDNA rejects, malformed addresses and
// ports outside 1-65535 are refused.
func ParseAuthority(s string) (Destination, error) {
	var d Destination
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return d, fmt.Errorf("%q: missing ']' (%s)", s, destinationForms)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return d, fmt.Errorf("%q: text after ']' (%s)", s, destinationForms)
		}
		port = strings.TrimPrefix(port, ":")
		if port == "" && strings.HasSuffix(s, ":") {
			return d, fmt.Errorf("%q: empty port (%s)", s, destinationForms)
		}
		if !strings.Contains(host, ":") {
			return d, fmt.Errorf("%q: only IPv6 addresses go in brackets (%s)", s, destinationForms)
		}
	case strings.Count(s, ":") == 1:
		var p string
		host, p, _ = strings.Cut(s, ":")
		if p == "" {
			return d, fmt.Errorf("%q: empty port (%s)", s, destinationForms)
		}
		port = p
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return d, fmt.Errorf("bad port %q in %q (1-65535)", port, s)
		}
		d.Port = uint16(n)
	}
	if host == "" {
		return d, fmt.Errorf("%q: no host (%s)", s, destinationForms)
	}
	a, err := ParseAddr(host, nil)
	switch {
	case err == nil:
		d.IP = a
		return d, nil
	case !errors.Is(err, ErrNotAddress):
		return d, err
	}
	if strings.Contains(host, "*") {
		return d, fmt.Errorf("%q: a destination is a name, not a pattern", s)
	}
	n, err := NormalizeHost(host)
	if err != nil {
		return d, fmt.Errorf("%q: %w (%s)", s, err, destinationForms)
	}
	d.Host = n
	return d, nil
}
