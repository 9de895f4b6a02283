package dnsguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
)

// BlockResponse is how a denied query is answered.
type BlockResponse string

const (
	// BlockNXDomain answers NXDOMAIN with the SOA of a synthetic zone and an
	// Extended DNS Error 15 (Blocked) naming the rule. The default.
	BlockNXDomain BlockResponse = "nxdomain"
	// BlockSinkhole answers A queries with 0.0.0.0 and AAAA queries with ::
	// (other types get an empty NOERROR answer), plus the same EDE.
	BlockSinkhole BlockResponse = "sinkhole"
	// BlockRefused answers REFUSED, plus the same EDE.
	BlockRefused BlockResponse = "refused"
)

// Config is the "dns" section of the egressguard configuration. Start from
// Defaults(), decode YAML on top of it (ParseConfig does both, strictly),
// then Validate.
type Config struct {
	// Listen is the address the UDP and TCP servers bind, host:port. Port 0
	// lets the OS choose (the same port is then used for TCP).
	Listen string `yaml:"listen"`
	// Upstreams are the resolvers allowed queries are forwarded to, as
	// IP or IP:port (port 53 when omitted), tried in order. Empty means the
	// nameservers in ResolvConf.
	Upstreams []string `yaml:"upstreams"`
	// ResolvConf is read for upstreams when Upstreams is empty.
	ResolvConf string `yaml:"resolv_conf"`
	// CheckUpstreams sends one probe query to every upstream at Start and
	// refuses to start when an upstream is not a DNS server or none answers.
	CheckUpstreams bool `yaml:"check_upstreams"`
	// BlockResponse is nxdomain (default), sinkhole or refused.
	BlockResponse BlockResponse `yaml:"block_response"`
	// CacheSize bounds the answer cache, in entries (0 disables caching).
	CacheSize int `yaml:"cache_size"`
	// UpstreamTimeout bounds one attempt at one upstream.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// QueryTimeout bounds the whole resolution of one client query,
	// failover included.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// NegativeTTL is the TTL of synthesised answers (deny SOA, sinkhole
	// addresses, redirect CNAME) and the upper bound on how long negative
	// upstream answers are cached.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// MaxTTL caps how long a positive answer is cached.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// ServeStale is how long past its expiry a cached answer may still be
	// served (with TTL 30 s and EDE 3) when no upstream answers; 0 disables.
	ServeStale time.Duration `yaml:"serve_stale"`
	// UDPSize is the EDNS0 buffer size advertised to clients and upstreams.
	UDPSize int `yaml:"udp_size"`
	// MaxConcurrent bounds upstream queries in flight; beyond it queries are
	// answered SERVFAIL at once rather than queued without bound.
	MaxConcurrent int `yaml:"max_concurrent"`
	// AllowFrom are the source CIDRs (or IPs) allowed to query; others are
	// answered REFUSED and counted. Default: DefaultAllowFrom.
	AllowFrom []string `yaml:"allow_from"`
	// RRL is response rate limiting for UDP answers (off by default).
	RRL RRLConfig `yaml:"rrl"`
}

// Defaults returns the configuration used when a field is not set.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:5353",
		ResolvConf:      "/etc/resolv.conf",
		CheckUpstreams:  true,
		BlockResponse:   BlockNXDomain,
		CacheSize:       10000,
		UpstreamTimeout: 1500 * time.Millisecond,
		QueryTimeout:    4 * time.Second,
		NegativeTTL:     30 * time.Second,
		MaxTTL:          time.Hour,
		ServeStale:      10 * time.Minute,
		UDPSize:         1232,
		MaxConcurrent:   2000,
		AllowFrom:       append([]string(nil), DefaultAllowFrom...),
		RRL:             defaultRRL(),
	}
}

// ParseConfig decodes a "dns" section (YAML) on top of Defaults, strictly
// (unknown fields are errors), and validates it.
func ParseConfig(b []byte) (Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("dnsguard: config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

const (
	maxNegativeTTL = 24 * time.Hour
	minUDPSize     = dns.MinMsgSize
	maxUDPSize     = 4096
)

// Validate reports every problem in the configuration at once, with the
// field path of each (dns.<field>).
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("dnsguard: config: dns.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, err := splitListen(c.Listen); err != nil {
		add("listen", "%v", err)
	}
	for i, u := range c.Upstreams {
		if _, err := ParseUpstream(u); err != nil {
			add(fmt.Sprintf("upstreams[%d]", i), "%v", err)
		}
	}
	if len(c.Upstreams) == 0 && c.ResolvConf == "" {
		add("upstreams", "empty and no resolv_conf to read them from")
	}
	switch c.BlockResponse {
	case BlockNXDomain, BlockSinkhole, BlockRefused:
	default:
		add("block_response", "%q is not one of nxdomain, sinkhole, refused", c.BlockResponse)
	}
	if c.CacheSize < 0 {
		add("cache_size", "must not be negative, got %d", c.CacheSize)
	}
	if c.UpstreamTimeout <= 0 {
		add("upstream_timeout", "must be positive, got %s", c.UpstreamTimeout)
	}
	if c.QueryTimeout <= 0 {
		add("query_timeout", "must be positive, got %s", c.QueryTimeout)
	} else if c.UpstreamTimeout > c.QueryTimeout {
		add("upstream_timeout", "%s is longer than query_timeout %s", c.UpstreamTimeout, c.QueryTimeout)
	}
	if c.NegativeTTL < time.Second || c.NegativeTTL > maxNegativeTTL {
		add("negative_ttl", "must be between 1s and %s, got %s", maxNegativeTTL, c.NegativeTTL)
	}
	if c.MaxTTL < time.Second {
		add("max_ttl", "must be at least 1s, got %s", c.MaxTTL)
	}
	if c.ServeStale < 0 {
		add("serve_stale", "must not be negative, got %s", c.ServeStale)
	}
	if c.UDPSize < minUDPSize || c.UDPSize > maxUDPSize {
		add("udp_size", "must be between %d and %d, got %d", minUDPSize, maxUDPSize, c.UDPSize)
	}
	if c.MaxConcurrent < 1 {
		add("max_concurrent", "must be at least 1, got %d", c.MaxConcurrent)
	}
	if len(c.AllowFrom) == 0 {
		add("allow_from", "empty: no client could query (list the CIDRs allowed, e.g. the pod CIDRs)")
	}
	if _, err := parseACL(c.AllowFrom); err != nil {
		for _, e := range flatten(err) {
			add("", "%v", e)
		}
	}
	c.RRL.validate(add)
	return errors.Join(errs...)
}

// ParseUpstream parses an upstream address: an IP literal with an optional
// port ("10.0.0.10", "10.0.0.10:53", "[2001:db8::1]:53", "2001:db8::1").
// Host names are rejected: resolving the resolver's own upstream through
// itself would loop.
func ParseUpstream(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.AddrPort{}, errors.New("empty upstream address")
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip.Unmap().WithZone(""), 53), nil
	}
	if strings.Contains(s, "://") {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: URL schemes are not supported: want IP or IP:port (plain DNS over UDP, TCP on truncation)", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: want IP or IP:port: %w", s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: %q is not an IP address (host names are not allowed for upstreams)", s, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: invalid port %q", s, port)
	}
	return netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(p)), nil
}

// splitListen checks a listen address: host:port with a numeric port.
func splitListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want host:port: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: invalid port %q", s, port)
	}
	if host == "" {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(p)), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// upstreamAddrs returns the parsed upstreams, reading ResolvConf when the
// list is empty.
func (c Config) upstreamAddrs() ([]netip.AddrPort, error) {
	list := c.Upstreams
	field := "dns.upstreams"
	if len(list) == 0 {
		rc, err := dns.ClientConfigFromFile(c.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnsguard: config: dns.upstreams is empty and %s cannot be read: %w", c.ResolvConf, err)
		}
		for _, s := range rc.Servers {
			list = append(list, net.JoinHostPort(s, rc.Port))
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("dnsguard: config: dns.upstreams is empty and %s names no nameserver", c.ResolvConf)
		}
		field = c.ResolvConf + ": nameserver"
	}
	out := make([]netip.AddrPort, 0, len(list))
	var errs []error
	for i, s := range list {
		a, err := ParseUpstream(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("dnsguard: config: %s[%d]: %w", field, i, err))
			continue
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}
