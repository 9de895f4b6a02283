// Package capture builds and applies the traffic-capture rules the
// egressguard init container installs in a pod's network namespace: every
// outbound TCP connection is redirected to the Envoy sidecar's outbound
// port, except the sidecar's own connections (matched by UID), connections
// that stay inside the pod (loopback), and the destination ports and CIDRs
// the operator excludes.
//
// The rules live in two chains of the nat table, EGRESSGUARD_OUTPUT (the
// exemptions, hooked from OUTPUT for TCP) and EGRESSGUARD_REDIRECT (the
// REDIRECT to the sidecar). Rules renders them as iptables-restore input
// for IPv4 and IPv6; Apply feeds them to iptables-restore --noflush and
// ip6tables-restore --noflush, so other tables and chains survive and a
// second Apply leaves the same ruleset.
//
// What is not captured, by design: UDP (DNS goes to dnsguard; QUIC and other
// UDP egress must be stopped by a NetworkPolicy), inbound traffic, and
// traffic of the exempt UIDs/GIDs.
package capture

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Chain names in the nat table. Both are owned by egressguard: applying
// the rules flushes and refills them.
const (
	OutputChain   = "EGRESSGUARD_OUTPUT"
	RedirectChain = "EGRESSGUARD_REDIRECT"
)

// Defaults shared with the webhook (xds.DefaultOutboundPort, proxy_uid).
const (
	DefaultProxyPort = 15001
	DefaultProxyUID  = 1337
)

// Options describe what to capture. The zero value is invalid: ProxyPort
// and ProxyUID are required.
type Options struct {
	// ProxyPort is the sidecar's outbound listener; captured connections
	// are redirected to it on the loopback address.
	ProxyPort uint16
	// ProxyUID is the UID the sidecar runs as. Its connections are never
	// captured (otherwise Envoy's upstream connections would loop back
	// into Envoy). It must not be 0: that would exempt every root process.
	ProxyUID uint32
	// ExcludeUIDs are further UIDs whose connections are not captured.
	ExcludeUIDs []uint32
	// ExcludeGIDs are GIDs whose connections are not captured. The match
	// is on the socket owner's primary (fs) GID, so a pod whose app runs
	// with that group (runAsGroup) bypasses the sidecar: use with care.
	ExcludeGIDs []uint32
	// ExcludePorts are destination TCP ports never captured, to any
	// destination.
	ExcludePorts []uint16
	// ExcludeCIDRs are destinations never captured. IPv4 prefixes go into
	// the IPv4 rules, IPv6 prefixes into the IPv6 rules.
	ExcludeCIDRs []netip.Prefix
}

// Validate reports every problem with o, joined, each naming its field.
func (o Options) Validate() error {
	var errs []error
	if o.ProxyPort == 0 {
		errs = append(errs, errors.New("capture: proxy_port: required (the sidecar's outbound port, e.g. 15001)"))
	}
	if o.ProxyUID == 0 {
		errs = append(errs, errors.New("capture: proxy_uid: must not be 0 (root): every process running as root would bypass the sidecar"))
	}
	for i, uid := range o.ExcludeUIDs {
		if uid == 0 {
			errs = append(errs, fmt.Errorf("capture: exclude_uids[%d]: must not be 0 (root): every process running as root would bypass the sidecar", i))
		}
	}
	for i, gid := range o.ExcludeGIDs {
		if gid == 0 {
			errs = append(errs, fmt.Errorf("capture: exclude_gids[%d]: must not be 0 (root group): every process in group 0 would bypass the sidecar", i))
		}
	}
	for i, p := range o.ExcludePorts {
		if p == 0 {
			errs = append(errs, fmt.Errorf("capture: exclude_ports[%d]: port 0 is not a destination port", i))
		}
	}
	for i, p := range o.ExcludeCIDRs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("capture: exclude_cidrs[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// ParsePrefix parses an excluded destination: a CIDR ("10.0.0.0/8",
// "2001:db8::/32") or a single address ("10.1.2.3" means 10.1.2.3/32). It
// rejects what iptables would accept with a different meaning than the
// writer probably intended: host bits set ("10.1.2.3/8"), IPv4-mapped IPv6
// prefixes (such traffic leaves as IPv4, so an ip6tables rule never sees
// it) and /0 (which would switch capture off for a whole family).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR: %w", s, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be excluded", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err := checkPrefix(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid prefix")
	case p.Addr().Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 prefix; such connections leave as IPv4, write the IPv4 CIDR instead", p)
	case p.Bits() == 0:
		return fmt.Errorf("%s would exclude every %s destination and switch capture off; use --ipv6=off or do not inject the sidecar instead", p, family(p))
	case p.Masked() != p:
		return fmt.Errorf("%s has host bits set; did you mean %s (or %s/%d for the single address)?", p, p.Masked(), p.Addr(), p.Addr().BitLen())
	}
	return nil
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// Family selects IPv4 (iptables) or IPv6 (ip6tables) rules.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

func (f Family) loopback() netip.Prefix {
	if f == IPv6 {
		return netip.MustParsePrefix("::1/128")
	}
	return netip.MustParsePrefix("127.0.0.0/8")
}

// hookRule jumps from the nat table's OUTPUT chain into OutputChain. It is
// written exactly as iptables-save prints it, so Apply can tell whether a
// previous run already installed it.
const hookRule = "-A OUTPUT -p tcp -j " + OutputChain

// Rules renders o as iptables-restore input for the nat table: v4 for
// iptables-restore, v6 for ip6tables-restore, both meant for --noflush.
// The output is deterministic: exclusions are sorted and de-duplicated.
// Piping the same text into iptables-restore --noflush twice appends the
// OUTPUT hook twice; Apply avoids that.
func Rules(o Options) (v4, v6 string, err error) {
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	n := normalize(o)
	return render(n, IPv4, true), render(n, IPv6, true), nil
}

// normalize returns a sorted, de-duplicated copy of o (o is not modified).
func normalize(o Options) Options {
	n := Options{ProxyPort: o.ProxyPort, ProxyUID: o.ProxyUID}
	n.ExcludeUIDs = slices.DeleteFunc(sortedUnique(o.ExcludeUIDs, cmp.Compare[uint32]), func(u uint32) bool { return u == o.ProxyUID })
	n.ExcludeGIDs = sortedUnique(o.ExcludeGIDs, cmp.Compare[uint32])
	n.ExcludePorts = sortedUnique(o.ExcludePorts, cmp.Compare[uint16])
	n.ExcludeCIDRs = sortedUnique(o.ExcludeCIDRs, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return n
}

func sortedUnique[T comparable](in []T, compare func(a, b T) int) []T {
	out := slices.Clone(in)
	slices.SortFunc(out, compare)
	return slices.Compact(out)
}

// render writes the iptables-restore document for one family. The rule
// order inside OutputChain is the order of evaluation; the first RETURN
// wins and the last rule redirects whatever no exemption matched.
func render(o Options, f Family, hook bool) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	restore := "iptables-restore"
	if f == IPv6 {
		restore = "ip6tables-restore"
	}
	w("# egressguard traffic capture (%s): outbound TCP is redirected to the sidecar on port %d.", f, o.ProxyPort)
	w("# Apply with %s --noflush; egressguard iptables --apply also keeps the OUTPUT hook unique.", restore)
	w("*nat")
	w(":%s - [0:0]", OutputChain)
	w(":%s - [0:0]", RedirectChain)
	if hook {
		w("%s", hookRule)
	}
	// The sidecar's own connections (and other exempt owners) go out as they are.
	w("-A %s -m owner --uid-owner %d -j RETURN", OutputChain, o.ProxyUID)
	for _, uid := range o.ExcludeUIDs {
		w("-A %s -m owner --uid-owner %d -j RETURN", OutputChain, uid)
	}
	for _, gid := range o.ExcludeGIDs {
		w("-A %s -m owner --gid-owner %d -j RETURN", OutputChain, gid)
	}
	// Traffic routed over loopback never leaves the pod: 127.0.0.0/8 or ::1,
	// and the pod's own addresses. The loopback CIDR rule is implied by -o lo
	// but states the intent for readers of iptables-save.
	w("-A %s -o lo -j RETURN", OutputChain)
	w("-A %s -d %s -j RETURN", OutputChain, f.loopback())
	for _, p := range o.ExcludePorts {
		w("-A %s -p tcp -m tcp --dport %s -j RETURN", OutputChain, strconv.Itoa(int(p)))
	}
	for _, p := range o.ExcludeCIDRs {
		if p.Addr().Is4() == (f == IPv4) {
			w("-A %s -d %s -j RETURN", OutputChain, p)
		}
	}
	w("-A %s -j %s", OutputChain, RedirectChain)
	w("-A %s -p tcp -j REDIRECT --to-ports %d", RedirectChain, o.ProxyPort)
	w("COMMIT")
	return b.String()
}
