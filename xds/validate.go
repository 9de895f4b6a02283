package xds

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Validate checks a translation's output the way a careful client would:
// every resource passes its generated ValidateAll, so does every message
// packed in an Any inside it (HCM, filters, per-route configs, transport
// sockets, access logs), no two filter chains of a listener can match the
// same connection (CheckFilterChains), and no reference dangles (listener → route
// configuration → cluster → endpoints, including api_listener, which
// go-control-plane's Snapshot.Consistent does not follow).
func Validate(r *Resources) error { return validateWith(r, nil, nil) }

// validateWith is Validate; virtual hosts that vhc built (eagerly) were
// checked when they were built and are not walked again. Shared virtual
// hosts are checked once however many route configurations hold them. A
// listener whose wire digest is in digests (by name) is chain-checked
// through vhc's chain memo, so a listener whose bytes were checked before
// is not checked again.
func validateWith(r *Resources, vhc *vhostCache, digests map[string][sha256.Size]byte) error {
	var errs []error
	ac := &anyChecker{}
	if vhc != nil {
		ac.shared = &vhc.anys
	}
	for _, l := range r.Listeners {
		if err := ac.validate(l, "listener "+l.Name); err != nil {
			errs = append(errs, err)
		}
		var err error
		if d, ok := digests[l.Name]; ok && vhc != nil && vhc.chains != nil {
			err = vhc.chains.check(l, d)
		} else {
			err = CheckFilterChains(l)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[*routev3.VirtualHost]bool{}
	for _, rc := range r.Routes {
		path := "route_configuration " + rc.Name
		if err := ac.validate(withoutVirtualHosts(rc), path); err != nil {
			errs = append(errs, err)
		}
		for i, vh := range rc.VirtualHosts {
			if vh == nil {
				errs = append(errs, fmt.Errorf("%s: virtual_hosts[%d]: nil", path, i))
				continue
			}
			if seen[vh] {
				continue
			}
			seen[vh] = true
			var err error
			if e := vhc.lookup(vh); e != nil {
				err = e.err
			} else {
				err = ac.validate(vh, "virtual_host "+vh.Name)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: virtual_hosts[%d]: %w", path, i, err))
			}
		}
	}
	for _, c := range r.Clusters {
		if err := ac.validate(c, "cluster "+c.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, e := range r.Endpoints {
		if err := ac.validate(e, "cluster_load_assignment "+e.ClusterName); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range r.Secrets {
		if err := ac.validate(s, "secret "+s.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkReferences(r); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xds: invalid resources: %w", err)
	}
	return nil
}

// withoutVirtualHosts is a shallow copy of rc without its virtual hosts
// (they are validated one by one); the copy shares every other field.
func withoutVirtualHosts(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	src := rc.ProtoReflect()
	dst := src.Type().New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != virtualHostsField {
			dst.Set(fd, v)
		}
		return true
	})
	return dst.Interface().(*routev3.RouteConfiguration)
}

// virtualHostsField is RouteConfiguration.virtual_hosts' field number.
var virtualHostsField = (&routev3.RouteConfiguration{}).ProtoReflect().Descriptor().Fields().ByName("virtual_hosts").Number()

type validatorAll interface{ ValidateAll() error }

// ValidateDeep runs ValidateAll on m and, recursively, on every message
// packed in an Any inside it (ValidateAll itself stops at an Any). Errors
// name the path from path down. Anything built for Envoy outside this
// package (the injected sidecar's bootstrap) is checked with it too.
func ValidateDeep(m proto.Message, path string) error {
	return (&anyChecker{}).validate(m, path)
}

// anyChecker validates messages and the Anys inside them, remembering the
// Anys (type and bytes) that passed: a listener repeats the same packed
// configuration (routers, access loggers, inspectors) in many chains, and
// the classes of one policy version repeat the same chains (shared: the
// enforcer's memo for the policy version, kept in its vhostCache).
type anyChecker struct {
	ok     map[string]bool
	shared *anyMemo
}

// anyMemo remembers Anys that passed deep validation, for all the classes
// built from one policy version, by a SHA-256 of type URL and bytes (it
// lives as long as the policy version: digests, not copies of the bytes).
type anyMemo struct {
	mu sync.Mutex
	ok map[[sha256.Size]byte]bool
}

func anyDigest(a *anypb.Any) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(a.GetTypeUrl()))
	h.Write([]byte{0})
	h.Write(a.GetValue())
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func (m *anyMemo) has(d [sha256.Size]byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ok[d]
}

func (m *anyMemo) add(d [sha256.Size]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ok == nil {
		m.ok = map[[sha256.Size]byte]bool{}
	}
	m.ok[d] = true
}

func (c *anyChecker) validate(m proto.Message, path string) error {
	var errs []error
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	walkAnys(m.ProtoReflect(), path, func(a *anypb.Any, at string) {
		key := a.GetTypeUrl() + "\x00" + string(a.GetValue())
		if c.ok[key] {
			return
		}
		var digest [sha256.Size]byte
		if c.shared != nil {
			digest = anyDigest(a)
		}
		if c.shared != nil && c.shared.has(digest) {
			if c.ok == nil {
				c.ok = map[string]bool{}
			}
			c.ok[key] = true
			return
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: unpack %s: %w", at, a.GetTypeUrl(), err))
			return
		}
		if err := c.validate(inner, at+"("+string(inner.ProtoReflect().Descriptor().FullName())+")"); err != nil {
			errs = append(errs, err)
			return
		}
		if c.ok == nil {
			c.ok = map[string]bool{}
		}
		c.ok[key] = true
		if c.shared != nil {
			c.shared.add(digest)
		}
	})
	return errors.Join(errs...)
}

var anyFullName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// mayHoldAny memoises, per message type, whether an Any can occur anywhere
// below it, so the walk skips the (large) parts of a route table that
// cannot hold one.
var mayHoldAny sync.Map // protoreflect.FullName → bool

func holdsAny(md protoreflect.MessageDescriptor) bool {
	if v, ok := mayHoldAny.Load(md.FullName()); ok {
		return v.(bool)
	}
	mayHoldAny.Store(md.FullName(), false) // breaks recursion cycles
	res := md.FullName() == anyFullName
	fields := md.Fields()
	for i := 0; i < fields.Len() && !res; i++ {
		f := fields.Get(i)
		if f.IsMap() {
			f = f.MapValue()
		}
		if f.Message() != nil && holdsAny(f.Message()) {
			res = true
		}
	}
	mayHoldAny.Store(md.FullName(), res)
	return res
}

func walkAnys(m protoreflect.Message, path string, fn func(*anypb.Any, string)) {
	if !holdsAny(m.Descriptor()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		md := fd.Message()
		if fd.IsMap() {
			md = fd.MapValue().Message()
		}
		if md == nil || !holdsAny(md) {
			return true
		}
		at := path + "." + string(fd.Name())
		visit := func(mv protoreflect.Message, at string) {
			if a, ok := mv.Interface().(*anypb.Any); ok {
				fn(a, at)
				return
			}
			walkAnys(mv, at, fn)
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", at, i))
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv.Message(), fmt.Sprintf("%s[%q]", at, k.String()))
				return true
			})
		default:
			visit(v.Message(), at)
		}
		return true
	})
}

// checkReferences reports dangling names.
func checkReferences(r *Resources) error {
	routes := map[string]bool{}
	for _, rc := range r.Routes {
		routes[rc.Name] = true
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range r.Clusters {
		clusters[c.Name] = c
	}
	cla := map[string]bool{}
	for _, e := range r.Endpoints {
		cla[e.ClusterName] = true
	}
	secrets := map[string]bool{}
	for _, s := range r.Secrets {
		secrets[s.Name] = true
	}
	var errs []error
	needRoute := func(from, name string) {
		if !routes[name] {
			errs = append(errs, fmt.Errorf("%s: route configuration %q does not exist", from, name))
		}
	}
	needCluster := func(from func() string, name string) {
		if _, ok := clusters[name]; !ok {
			errs = append(errs, fmt.Errorf("%s: cluster %q does not exist", from(), name))
		}
	}
	hcmRefs := func(from string, a *anypb.Any) {
		h := &hcmv3.HttpConnectionManager{}
		if err := a.UnmarshalTo(h); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
			return
		}
		switch rs := h.RouteSpecifier.(type) {
		case *hcmv3.HttpConnectionManager_Rds:
			needRoute(from, rs.Rds.GetRouteConfigName())
		case *hcmv3.HttpConnectionManager_RouteConfig:
			routeRefs(rs.RouteConfig, nil, needCluster)
		default:
			errs = append(errs, fmt.Errorf("%s: http connection manager without routes", from))
		}
	}
	for _, l := range r.Listeners {
		from := "listener " + l.Name
		if api := l.GetApiListener().GetApiListener(); api != nil {
			hcmRefs(from+" api_listener", api)
		}
		for _, fc := range l.FilterChains {
			if ts := fc.GetTransportSocket().GetTypedConfig(); ts != nil {
				// A terminating chain's certificates come over SDS from
				// this snapshot: each named secret must be in it.
				dtc := &tlsv3.DownstreamTlsContext{}
				if err := ts.UnmarshalTo(dtc); err != nil {
					errs = append(errs, fmt.Errorf("%s chain %s transport socket: %w", from, fc.Name, err))
				}
				for _, sds := range dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
					if !secrets[sds.GetName()] {
						errs = append(errs, fmt.Errorf("%s chain %s: secret %q does not exist", from, fc.Name, sds.GetName()))
					}
				}
			}
			for _, f := range fc.Filters {
				at := from + " chain " + fc.Name + " filter " + f.Name
				a := f.GetTypedConfig()
				switch {
				case a.MessageIs(&hcmv3.HttpConnectionManager{}):
					hcmRefs(at, a)
				case a.MessageIs(&tcpproxyv3.TcpProxy{}):
					tp := &tcpproxyv3.TcpProxy{}
					if err := a.UnmarshalTo(tp); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", at, err))
						continue
					}
					from := func() string { return at }
					if c := tp.GetCluster(); c != "" {
						needCluster(from, c)
					}
					for _, wc := range tp.GetWeightedClusters().GetClusters() {
						needCluster(from, wc.Name)
					}
				}
			}
		}
	}
	seen := map[*routev3.VirtualHost]bool{}
	for _, rc := range r.Routes {
		routeRefs(rc, seen, needCluster)
	}
	for _, c := range r.Clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.Name
			}
			if !cla[name] {
				errs = append(errs, fmt.Errorf("cluster %s: endpoints %q do not exist", c.Name, name))
			}
		}
	}
	return errors.Join(errs...)
}

// routeRefs checks the clusters rc's routes name; seen (optional) skips
// virtual hosts already checked in another route configuration.
func routeRefs(rc *routev3.RouteConfiguration, seen map[*routev3.VirtualHost]bool, needCluster func(from func() string, name string)) {
	for _, vh := range rc.VirtualHosts {
		if seen != nil {
			if seen[vh] {
				continue
			}
			seen[vh] = true
		}
		for _, rt := range vh.Routes {
			a := rt.GetRoute()
			if a == nil {
				continue
			}
			from := func() string {
				return "route_configuration " + rc.Name + " virtual_host " + vh.GetName() + " route " + rt.GetName()
			}
			if c := a.GetCluster(); c != "" {
				needCluster(from, c)
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				needCluster(from, wc.Name)
			}
		}
	}
}
