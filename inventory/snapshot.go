package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/gaissmai/bart"
)

// DefaultEnvironment is the environment of sources that no workload claims,
// when the inventory does not say otherwise. Unknown callers are treated as
// staging (guarded), never as production: the guard fails closed.
const DefaultEnvironment = "staging"

// UnknownName is the name of the default workload (see Snapshot.Default).
const UnknownName = "unknown"

// Validation errors; the error returned by NewSnapshot, Parse and LoadFile
// wraps one of these for every problem found (use errors.Is).
var (
	ErrNoName        = errors.New("name is required")
	ErrNoEnvironment = errors.New("environment is required")
	ErrBadIP         = errors.New("bad IP address or prefix")
	ErrDuplicateIP   = errors.New("IP prefix claimed by two workloads")
	ErrDuplicateNode = errors.New("node ID claimed by two workloads")
	ErrDuplicateName = errors.New("workload defined twice")
	ErrBadString     = errors.New("must be printable UTF-8")
	ErrEmptyNodeID   = errors.New("node ID must not be empty")
	ErrEmptyLabelKey = errors.New("label key must not be empty")
	ErrNoDocument    = errors.New("empty inventory document")
	ErrExtraDocument = errors.New("more than one YAML document")
	ErrSyntax        = errors.New("malformed inventory file")
)

// Snapshot is an immutable view of the inventory: every workload, indexed by
// source IP (longest prefix wins) and by Envoy node ID. It is safe for
// concurrent use. The *Workload values it hands out point into the
// snapshot and must not be modified.
type Snapshot struct {
	workloads []*Workload
	byIP      *bart.Table[*Workload]
	byNode    map[string]*Workload
	def       *Workload

	fpOnce sync.Once
	fp     string
}

// locator names where a workload (field == "") or one of its fields
// (j < 0 for the field itself, j >= 0 for an element of a list) comes from,
// for error messages. NewSnapshot uses "workloads[i].field[j]"; the file
// parser adds the file name and line.
type locator func(i int, field string, j int) string

func indexLocator(i int, field string, j int) string {
	if i < 0 {
		return field
	}
	s := fmt.Sprintf("workloads[%d]", i)
	if field != "" {
		s += "." + field
		if j >= 0 {
			s += fmt.Sprintf("[%d]", j)
		}
	}
	return s
}

// NewSnapshot validates workloads and builds a snapshot from a deep copy of
// them (the caller keeps ownership of its slices and maps). defaultEnv is
// the environment of the default workload ("" means DefaultEnvironment).
//
// It reports every problem at once (errors.Join): a missing name or
// environment, the same namespace/name twice, an IP prefix or node ID
// claimed by two workloads, an invalid prefix or one with host bits set.
// Prefixes of different lengths may overlap (the longest prefix wins on
// lookup); the identical prefix in two workloads is an error. IPv4-mapped
// IPv6 prefixes (::ffff:10.0.0.0/104) are stored as IPv4 (10.0.0.0/8).
func NewSnapshot(defaultEnv string, workloads []Workload) (*Snapshot, error) {
	s, err := build(defaultEnv, workloads, indexLocator)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return s, nil
}

func build(defaultEnv string, in []Workload, where locator) (*Snapshot, error) {
	var errs []error
	bad := func(loc string, err error, format string, args ...any) {
		msg := ""
		if format != "" {
			msg = ": " + fmt.Sprintf(format, args...)
		}
		errs = append(errs, fmt.Errorf("%s: %w%s", loc, err, msg))
	}
	if defaultEnv == "" {
		defaultEnv = DefaultEnvironment
	}
	if !printable(defaultEnv) {
		bad(where(-1, "default_environment", -1), ErrBadString, "%q", defaultEnv)
	}

	s := &Snapshot{
		workloads: make([]*Workload, 0, len(in)),
		byIP:      new(bart.Table[*Workload]),
		byNode:    make(map[string]*Workload),
		def:       &Workload{Name: UnknownName, Environment: defaultEnv},
	}
	type owner struct {
		i int
		j int
	}
	ipOwner := make(map[netip.Prefix]owner)
	nodeOwner := make(map[string]owner)
	nameOwner := make(map[string]int)

	for i := range in {
		w := copyWorkload(&in[i])
		if w.Name == "" {
			bad(where(i, "name", -1), ErrNoName, "")
		} else if !printable(w.Name) {
			bad(where(i, "name", -1), ErrBadString, "%q", w.Name)
		}
		if w.Environment == "" {
			bad(where(i, "environment", -1), ErrNoEnvironment, "")
		} else if !printable(w.Environment) {
			bad(where(i, "environment", -1), ErrBadString, "%q", w.Environment)
		}
		if !printable(w.Namespace) {
			bad(where(i, "namespace", -1), ErrBadString, "%q", w.Namespace)
		}
		for k, v := range w.Labels {
			switch {
			case k == "":
				bad(where(i, "labels", -1), ErrEmptyLabelKey, "")
			case !printable(k):
				bad(where(i, "labels", -1), ErrBadString, "key %q", k)
			case !printable(v):
				bad(where(i, "labels."+k, -1), ErrBadString, "%q", v)
			}
		}
		if w.Name != "" {
			key := displayName(w)
			if prev, dup := nameOwner[key]; dup {
				bad(where(i, "", -1), ErrDuplicateName, "%s is also %s", key, where(prev, "", -1))
			} else {
				nameOwner[key] = i
			}
		}
		for j, p := range w.IPs {
			np, err := normalizePrefix(p)
			if err != nil {
				bad(where(i, "ips", j), ErrBadIP, "%v", err)
				continue
			}
			w.IPs[j] = np
			if prev, dup := ipOwner[np]; dup {
				if prev.i == i {
					bad(where(i, "ips", j), ErrDuplicateIP, "%s is listed twice in workload %s (also %s)",
						np, displayName(w), where(prev.i, "ips", prev.j))
				} else {
					bad(where(i, "ips", j), ErrDuplicateIP, "%s is in workload %s and in workload %s (%s)",
						np, displayName(w), displayName(&in[prev.i]), where(prev.i, "ips", prev.j))
				}
				continue
			}
			ipOwner[np] = owner{i, j}
			s.byIP.Insert(np, w)
		}
		for j, id := range w.NodeIDs {
			if id == "" {
				bad(where(i, "node_ids", j), ErrEmptyNodeID, "")
				continue
			}
			if !printable(id) {
				bad(where(i, "node_ids", j), ErrBadString, "%q", id)
				continue
			}
			if prev, dup := nodeOwner[id]; dup {
				bad(where(i, "node_ids", j), ErrDuplicateNode, "%q is in workload %s and in workload %s (%s)",
					id, displayName(w), displayName(&in[prev.i]), where(prev.i, "node_ids", prev.j))
				continue
			}
			nodeOwner[id] = owner{i, j}
			s.byNode[id] = w
		}
		s.workloads = append(s.workloads, w)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// normalizePrefix unmaps IPv4-mapped IPv6 prefixes and rejects invalid
// prefixes, zones and host bits (10.1.3.5/24 is almost always a typo for a
// single address or for 10.1.3.0/24).
func normalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("invalid prefix %s", p)
	}
	a := p.Addr()
	if a.Zone() != "" {
		return p, fmt.Errorf("%s: zones are not allowed", p)
	}
	if a.Is4In6() {
		if p.Bits() < 96 {
			return p, fmt.Errorf("%s: an IPv4-mapped prefix must be /96 or longer", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Errorf("%s has host bits set (did you mean %s or %s?)", p, m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return p, nil
}

func copyWorkload(w *Workload) *Workload {
	c := *w
	if len(w.Labels) > 0 {
		c.Labels = maps.Clone(w.Labels)
	} else {
		c.Labels = nil
	}
	if len(w.IPs) > 0 {
		c.IPs = slices.Clone(w.IPs)
	} else {
		c.IPs = nil
	}
	if len(w.NodeIDs) > 0 {
		c.NodeIDs = slices.Clone(w.NodeIDs)
	} else {
		c.NodeIDs = nil
	}
	return &c
}

func displayName(w *Workload) string {
	if w.Namespace == "" {
		return w.Name
	}
	return w.Namespace + "/" + w.Name
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// LookupIP finds the workload whose prefix is the longest match for ip.
// IPv4-mapped IPv6 addresses are looked up as IPv4; zones are ignored. It
// does not allocate.
func (s *Snapshot) LookupIP(ip netip.Addr) (*Workload, bool) {
	return s.byIP.Lookup(ip.Unmap())
}

// LookupNode finds the workload that owns an Envoy node ID.
func (s *Snapshot) LookupNode(id string) (*Workload, bool) {
	w, ok := s.byNode[id]
	return w, ok
}

// ResolveIP is LookupIP with unknown sources mapped to Default. It never
// returns nil.
func (s *Snapshot) ResolveIP(ip netip.Addr) *Workload {
	if w, ok := s.LookupIP(ip); ok {
		return w
	}
	return s.def
}

// ResolveNode is LookupNode with unknown nodes mapped to Default. It never
// returns nil.
func (s *Snapshot) ResolveNode(id string) *Workload {
	if w, ok := s.byNode[id]; ok {
		return w
	}
	return s.def
}

// Default is the workload of unknown callers: Name "unknown" and the
// inventory's default environment ("staging" unless configured), no
// namespace, no labels.
func (s *Snapshot) Default() *Workload { return s.def }

// DefaultEnvironment is the environment of Default.
func (s *Snapshot) DefaultEnvironment() string { return s.def.Environment }

// Workloads returns every workload in inventory order. The slice is a copy;
// the workloads are shared and must not be modified.
func (s *Snapshot) Workloads() []*Workload { return slices.Clone(s.workloads) }

// Len is the number of workloads.
func (s *Snapshot) Len() int { return len(s.workloads) }

// Fingerprint is a content hash of the snapshot (its canonical YAML form):
// equal inventories have equal fingerprints. A reload that changes nothing
// can be skipped by comparing them.
func (s *Snapshot) Fingerprint() string {
	s.fpOnce.Do(func() {
		b, err := s.Marshal()
		if err != nil {
			// Marshal of validated data does not fail; fall back to an
			// identity that never equals another snapshot's.
			s.fp = fmt.Sprintf("unmarshalable-%p", s)
			return
		}
		sum := sha256.Sum256(b)
		s.fp = hex.EncodeToString(sum[:])
	})
	return s.fp
}

// Empty returns a snapshot with no workloads whose default environment is
// defaultEnv ("" means DefaultEnvironment).
func Empty(defaultEnv string) *Snapshot {
	s, err := build(defaultEnv, nil, indexLocator)
	if err != nil {
		// Only a non-printable defaultEnv gets here: fall back to the
		// guarded default rather than fail.
		s, _ = build("", nil, indexLocator)
	}
	return s
}
