package xds

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// CheckFilterChains proves that no two filter chains of a listener can
// match the same connection, judged the way Envoy indexes them
// (source/common/listener_manager/filter_chain_manager_impl.cc,
// FilterChainManagerImpl::setupFilterChainMatcher and the
// addFilterChainFor* functions it calls, then convertIPsToTries):
//
//   - Envoy expands a chain's match into one leaf per combination of its
//     destination port, destination prefix, server name, transport
//     protocol, application protocol, direct source prefix, source type,
//     source prefix and source port, an empty field giving one "any" leaf;
//   - prefixes are normalised by Network::Address::CidrRange::create
//     (source/common/network/cidr_range.cc, truncateIpAddressAndLength:
//     host bits masked, the length capped at 32 or 128);
//   - an empty prefix list becomes both 0.0.0.0/0 and ::/0 in the trie
//     (makeCidrListEntry), so a chain without prefix_ranges and a chain
//     listing 0.0.0.0/0 or ::/0 share a trie node, and the trie answers one
//     of them arbitrarily (envoyproxy/envoy issue 7341) without any error
//     at load time;
//   - server names are lowercased and "*.example.com" is keyed as
//     ".example.com";
//   - two chains reaching the same leaf by any other route make Envoy
//     reject the listener ("multiple filter chains with overlapping
//     matching rules"), which the control plane would see as a NACK.
//
// Distinct but overlapping prefixes (10.0.0.0/8 and 10.1.0.0/16) are not
// ambiguous: the trie answers the longest one. Chains selected by a
// filter_chain_matcher (the newer matching API) are not checked: the
// translations here never emit one.
func CheckFilterChains(l *listenerv3.Listener) error {
	if l.GetFilterChainMatcher() != nil {
		return fmt.Errorf("listener %s: filter_chain_matcher is not checked; the translation does not emit it", l.Name)
	}
	// Server names are the one large dimension (thousands of names per
	// chain): chains are first bucketed by every other dimension, and only
	// chains sharing a bucket have their names compared.
	var errs []error
	chains := make([]indexedChain, len(l.FilterChains))
	buckets := map[chainLeaf][]int{}
	for i, fc := range l.FilterChains {
		c := &chains[i]
		c.name = fc.GetName()
		if c.name == "" {
			c.name = fmt.Sprintf("#%d", i)
		}
		leaves, names, err := chainLeaves(fc.GetFilterChainMatch())
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: filter chain %s: %w", l.Name, c.name, err))
			continue
		}
		if !slices.IsSorted(names) {
			slices.Sort(names)
		}
		c.names = names
		for _, lf := range leaves {
			buckets[lf] = append(buckets[lf], i)
		}
	}
	type pair struct{ a, b int }
	checked := map[pair]bool{}
	for lf, idx := range buckets {
		for x, a := range idx {
			for _, b := range idx[x+1:] {
				if checked[pair{a, b}] {
					continue
				}
				checked[pair{a, b}] = true
				if n, ok := chains[a].sharedName(&chains[b]); ok {
					lf.serverName = n
					errs = append(errs, fmt.Errorf("listener %s: filter chains %s and %s both match %s", l.Name, chains[a].name, chains[b].name, lf))
				}
			}
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// indexedChain is one chain's server-name keys, sorted.
type indexedChain struct {
	name  string
	names []string
}

// sharedName returns a server-name key both chains have (a merge of the
// two sorted lists).
func (c *indexedChain) sharedName(o *indexedChain) (string, bool) {
	a, b := c.names, o.names
	for len(a) > 0 && len(b) > 0 {
		switch cmp := strings.Compare(a[0], b[0]); {
		case cmp == 0:
			return a[0], true
		case cmp < 0:
			a = a[1:]
		default:
			b = b[1:]
		}
	}
	return "", false
}

// chainLeaf is one leaf of Envoy's filter chain index, every field in
// Envoy's normalised form ("" for "any"); serverName is left empty in the
// buckets of CheckFilterChains and filled in to report a shared leaf.
type chainLeaf struct {
	port        uint32
	destination string
	serverName  string
	transport   string
	alpn        string
	directSrc   string
	sourceType  listenerv3.FilterChainMatch_ConnectionSourceType
	source      string
	sourcePort  uint32
}

func (lf chainLeaf) String() string {
	port := "any port"
	if lf.port != 0 {
		port = fmt.Sprintf("port %d", lf.port)
	}
	s := fmt.Sprintf("%s, destination %s, server name %q, transport %q, ALPN %q", port, lf.destination, lf.serverName, lf.transport, lf.alpn)
	if lf.directSrc != anyPrefixes[0] && lf.directSrc != anyPrefixes[1] || lf.source != anyPrefixes[0] && lf.source != anyPrefixes[1] ||
		lf.sourceType != listenerv3.FilterChainMatch_ANY || lf.sourcePort != 0 {
		s += fmt.Sprintf(", direct source %s, source type %s, source %s, source port %d", lf.directSrc, lf.sourceType, lf.source, lf.sourcePort)
	}
	return s
}

// anyPrefixes is what Envoy puts in its trie for an empty prefix list
// (makeCidrListEntry: Network::Utility::getIpv4CidrCatchAllAddress and
// getIpv6CidrCatchAllAddress).
var anyPrefixes = [2]string{"0.0.0.0/0", "::/0"}

// chainLeaves expands a FilterChainMatch into Envoy's leaves but for the
// server name, and returns the server-name keys ("" for none) apart.
func chainLeaves(m *listenerv3.FilterChainMatch) ([]chainLeaf, []string, error) {
	if m.GetAddressSuffix() != "" || m.GetSuffixLen() != nil {
		// verifyNoDuplicateMatchers refuses them: "contains unimplemented fields".
		return nil, nil, errors.New("address_suffix and suffix_len are not implemented by Envoy")
	}
	var errs []error
	dst, err := envoyPrefixes(m.GetPrefixRanges())
	if err != nil {
		errs = append(errs, fmt.Errorf("prefix_ranges: %w", err))
	}
	direct, err := envoyPrefixes(m.GetDirectSourcePrefixRanges())
	if err != nil {
		errs = append(errs, fmt.Errorf("direct_source_prefix_ranges: %w", err))
	}
	src, err := envoyPrefixes(m.GetSourcePrefixRanges())
	if err != nil {
		errs = append(errs, fmt.Errorf("source_prefix_ranges: %w", err))
	}
	names := []string{""}
	if len(m.GetServerNames()) > 0 {
		names = names[:0]
		for _, n := range m.GetServerNames() {
			// setupFilterChainMatcher: partial wildcards are refused,
			// names lowercased; addFilterChainForServerNames keys
			// "*.x" as ".x".
			if strings.Contains(n, "*") && !strings.HasPrefix(n, "*.") {
				errs = append(errs, fmt.Errorf("server_names: %q is a partial wildcard, which Envoy refuses", n))
				continue
			}
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*.") {
				n = n[1:]
			}
			names = append(names, n)
		}
	}
	alpns := []string{""}
	if len(m.GetApplicationProtocols()) > 0 {
		alpns = m.GetApplicationProtocols()
	}
	srcPorts := []uint32{0}
	if len(m.GetSourcePorts()) > 0 {
		srcPorts = m.GetSourcePorts()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	n := len(dst) * len(alpns) * len(direct) * len(src) * len(srcPorts)
	out := make([]chainLeaf, 0, n)
	for _, d := range dst {
		for _, a := range alpns {
			for _, ds := range direct {
				for _, s := range src {
					for _, sp := range srcPorts {
						out = append(out, chainLeaf{
							port: m.GetDestinationPort().GetValue(), destination: d,
							transport: m.GetTransportProtocol(), alpn: a, directSrc: ds,
							sourceType: m.GetSourceType(), source: s, sourcePort: sp,
						})
					}
				}
			}
		}
	}
	return out, names, nil
}

// envoyPrefixes normalises CIDR ranges as Envoy's CidrRange::create does;
// an empty list is Envoy's two catch-all ranges.
func envoyPrefixes(rs []*corev3.CidrRange) ([]string, error) {
	if len(rs) == 0 {
		return anyPrefixes[:], nil
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		p, err := envoyPrefix(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p.String())
	}
	return out, nil
}

// envoyPrefix is one CidrRange as Envoy normalises it: an IPv4-mapped
// address stays IPv6 (Utility::parseInternetAddress keeps the family), the
// length is capped at the family's width and host bits are masked.
func envoyPrefix(r *corev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", r.GetAddressPrefix())
	}
	bits := min(int(r.GetPrefixLen().GetValue()), a.BitLen())
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// chainMemo remembers CheckFilterChains' result per listener content, the
// SHA-256 of its deterministic wire form: a listener whose bytes were
// checked before (a policy change that touched only routes, reasons or
// clusters; classes whose listeners come out identical) is not checked
// again. It keeps two generations: what the current rebuild checked or
// reused, and what the previous one did; rotate forgets the older.
type chainMemo struct {
	metrics   *Metrics
	mu        sync.Mutex
	cur, prev map[[sha256.Size]byte]error
}

func newChainMemo(m *Metrics) *chainMemo {
	return &chainMemo{metrics: m, cur: map[[sha256.Size]byte]error{}}
}

// check is CheckFilterChains(l) for a listener whose wire form has the
// given digest.
func (m *chainMemo) check(l *listenerv3.Listener, digest [sha256.Size]byte) error {
	m.mu.Lock()
	err, ok := m.cur[digest]
	if !ok {
		if err, ok = m.prev[digest]; ok {
			m.cur[digest] = err
		}
	}
	m.mu.Unlock()
	if ok {
		m.metrics.chainChecks.WithLabelValues("memo").Inc()
		return err
	}
	err = CheckFilterChains(l)
	m.metrics.chainChecks.WithLabelValues("computed").Inc()
	m.mu.Lock()
	m.cur[digest] = err
	m.mu.Unlock()
	return err
}

// rotate starts a generation (a rebuild).
func (m *chainMemo) rotate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prev, m.cur = m.cur, map[[sha256.Size]byte]error{}
}
