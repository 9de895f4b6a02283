package xds

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

// DefaultGRPCPort is the port of a gRPC target without one ("xds:///name").
const DefaultGRPCPort = 443

// grpcPermissionDenied is google.rpc.Code PERMISSION_DENIED.
const grpcPermissionDenied = 7

// ProxylessNodePrefix starts the node ID of a proxyless gRPC client in a
// pod that egressguard's webhook prepared: "grpc~<podIP>~<pod>.<ns>~<ns>.svc.<domain>",
// the pod's sidecar node ID ("sidecar~...", inventory/kube.NodeID) with
// another first field. Inventory knows the pod by its sidecar ID; the
// enforcer resolves such a node through it (nodeauth.InventoryNodeID,
// which the identity guard uses too), so the client and the pod's sidecar
// are two nodes, each served its kind, of one workload.
const ProxylessNodePrefix = nodeauth.ProxylessNodePrefix

// ParseTarget splits a proxyless gRPC listener name ("host[:port]", the path
// of an "xds:///host:port" target) into a plan destination.
func ParseTarget(target string) (plan.Destination, error) {
	if target == "" {
		return plan.Destination{}, errors.New("empty target")
	}
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		host, portStr = target, ""
	}
	port := uint64(DefaultGRPCPort)
	if portStr != "" {
		port, err = strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			return plan.Destination{}, fmt.Errorf("target %q: invalid port %q", target, portStr)
		}
	}
	d := plan.Destination{Port: uint16(port), Protocol: "grpc"}
	if ip, err := netip.ParseAddr(host); err == nil {
		d.IP = ip.Unmap()
		return d, nil
	}
	h, err := plan.NormalizeHost(host)
	if err != nil {
		return plan.Destination{}, fmt.Errorf("target %q: %w", target, err)
	}
	if h[0] == '*' {
		return plan.Destination{}, fmt.Errorf("target %q: a wildcard is not a target", target)
	}
	// "10.20.0.1." is an IP literal too: it must meet the CIDR rules, not
	// slip past them as a host name.
	if ip, err := netip.ParseAddr(h); err == nil {
		d.IP = ip.Unmap()
		return d, nil
	}
	// A target names a DNS host: after normalisation (punycode) only
	// letters, digits, '-', '_' and '.' remain. plan.NormalizeHost is more
	// lenient (it accepts "[0", found by FuzzParseTarget).
	if i := strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}); i >= 0 {
		return plan.Destination{}, fmt.Errorf("target %q: host %q: invalid character %q", target, h, h[i])
	}
	d.Host = h
	return d, nil
}

// TranslateProxyless builds the resources a proxyless gRPC client needs for
// the given targets (its requested listener names): per target an
// api_listener, a route configuration with one catch-all virtual host whose
// action is plan.Decide's for that target, and the clusters and endpoints
// the route names. Deny routes abort with PERMISSION_DENIED through the
// fault filter (gRPC clients do not support direct_response); redirects go
// to the sandbox cluster; allows to the target itself. Clusters are EDS for
// IP endpoints and LOGICAL_DNS for names (grpc-go rejects STATIC).
func TranslateProxyless(p *plan.Plan, targets []string) (*Resources, error) {
	if p == nil {
		return nil, fmt.Errorf("xds: translate: nil plan")
	}
	out := &Resources{}
	clusters := map[string]bool{}
	var errs []error
	for _, t := range targets {
		r, err := translateTarget(p, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Listeners = append(out.Listeners, r.Listeners...)
		out.Routes = append(out.Routes, r.Routes...)
		for _, c := range r.Clusters {
			if !clusters[c.Name] {
				clusters[c.Name] = true
				out.Clusters = append(out.Clusters, c)
			}
		}
		for _, e := range r.Endpoints {
			if !clusters["eds:"+e.ClusterName] {
				clusters["eds:"+e.ClusterName] = true
				out.Endpoints = append(out.Endpoints, e)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("xds: translate proxyless: %w", err)
	}
	out.sort()
	return out, nil
}

// translateTarget is the per-target unit the enforcer memoises per class.
func translateTarget(p *plan.Plan, target string) (*Resources, error) {
	d, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	v := verdictOf(p, p.Decide(d).Rule)
	rcName := "grpc|" + target
	out := &Resources{}
	out.Listeners = append(out.Listeners, &listenerv3.Listener{
		Name: target,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(&hcmv3.HttpConnectionManager{
			StatPrefix: "egressguard_grpc",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    adsConfigSource(),
				RouteConfigName: rcName,
			}},
			HttpFilters: []*hcmv3.HttpFilter{
				httpFilter(faultFilterName, &httpfaultv3.HTTPFault{}),
				httpFilter(routerFilterName, &routerv3.Router{}),
			},
		})},
	})
	route := &routev3.Route{
		Name:  routeName(v),
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
	}
	host, port := d.Host, uint32(d.Port)
	if host == "" {
		host = d.IP.String()
	}
	switch v.kind {
	case vDeny:
		route.Action = clusterAction(DenyCluster)
		route.TypedPerFilterConfig = map[string]*anypb.Any{faultFilterName: mustAny(&httpfaultv3.HTTPFault{
			Abort: &httpfaultv3.FaultAbort{
				ErrorType:  &httpfaultv3.FaultAbort_GrpcStatus{GrpcStatus: grpcPermissionDenied},
				Percentage: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
			},
		})}
		out.Clusters = append(out.Clusters, edsCluster(DenyCluster))
		out.Endpoints = append(out.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: DenyCluster})
	case vRedirect:
		rd := v.rule.Redirect
		name := "grpc-sandbox|" + joinHostPort(rd.Host, redirectPort(rd))
		c, e := grpcCluster(name, rd.Host, redirectPort(rd))
		if rd.TLS {
			c.Name += "|tls"
			name = c.Name
			if e != nil {
				e.ClusterName = name
			} else {
				c.LoadAssignment.ClusterName = name
			}
			c.TransportSocket = grpcSandboxTLS(rd.Host)
		}
		act := clusterAction(name)
		if e == nil || e.Endpoints[0].LbEndpoints[0].GetEndpoint().GetHostname() != "" {
			act.Route.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
		}
		route.Action = act
		out.Clusters = append(out.Clusters, c)
		if e != nil {
			out.Endpoints = append(out.Endpoints, e)
		}
	default: // allow, report: the target itself
		name := "grpc-target|" + joinHostPort(host, port)
		c, e := grpcCluster(name, host, port)
		route.Action = clusterAction(name)
		out.Clusters = append(out.Clusters, c)
		if e != nil {
			out.Endpoints = append(out.Endpoints, e)
		}
	}
	out.Routes = append(out.Routes, &routev3.RouteConfiguration{
		Name: rcName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    target,
			Domains: []string{"*"},
			Routes:  []*routev3.Route{route},
		}},
	})
	return out, nil
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// grpcCluster is an EDS cluster (plus its endpoints) for an IP, a
// LOGICAL_DNS cluster for a name.
func grpcCluster(name, host string, port uint32) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	if _, err := netip.ParseAddr(host); err == nil {
		return edsCluster(name), singleEndpoint(name, host, port, "")
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment:       singleEndpoint(name, host, port, ""),
	}, nil
}

// grpcSandboxTLS is the transport socket of a TLS sandbox for grpc-go
// (gRFC A29 security in CDS; its parser is grpc-go's
// internal/xds/xdsclient/xdsresource/unmarshal_cds.go): the system's root
// certificates (A82, system_root_certs; grpc-go reads it with
// GRPC_EXPERIMENTAL_XDS_SYSTEM_ROOT_CERTS=true and NACKs the cluster
// without it), the sandbox's name as SNI (A101, sent with
// GRPC_EXPERIMENTAL_XDS_SNI=true) and as the one subject alternative name
// accepted. grpc-go reads the untyped match_subject_alt_names only, not
// match_typed_subject_alt_names. The channel must use xDS credentials
// (google.golang.org/grpc/credentials/xds) for any of it to apply; with
// plain insecure credentials the client speaks plaintext to the TLS
// sandbox and the RPC fails UNAVAILABLE: closed, never production.
func grpcSandboxTLS(host string) *corev3.TransportSocket {
	tc := &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				SystemRootCerts:      &tlsv3.CertificateValidationContext_SystemRootCerts{},
				MatchSubjectAltNames: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}}}, //nolint:staticcheck // grpc-go 1.85 reads only this field (see above)
			}},
		},
	}
	if _, err := netip.ParseAddr(host); err != nil {
		tc.Sni = host
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tc)},
	}
}
