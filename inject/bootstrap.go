package inject

import (
	"fmt"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/xds"
)

// Names of the static resources the sidecar bootstrap adds to xds.Bootstrap's.
const (
	readyListenerName = "egressguard_ready"
	adminClusterName  = "egressguard_admin"
)

// Placeholders for the pod fields unknown at admission. They are rendered
// through xds.Bootstrap (which validates the node ID as an opaque string),
// then every "$" of the result is escaped as "$$" (the kubelet turns "$$"
// back into "$" and never expands an escaped reference), and only then are
// the placeholders replaced by $(VAR) references, which the kubelet expands
// from the sidecar's downward-API environment. Nothing else in the
// bootstrap can be expanded by accident.
const (
	placeholderPodIP     = "EGRESSGUARD0POD0IP0"
	placeholderPodName   = "EGRESSGUARD0POD0NAME0"
	placeholderNamespace = "EGRESSGUARD0POD0NAMESPACE0"
)

// SidecarNodeID is the node ID the sidecar announces, written with the
// kubelet's $(VAR) references to its downward-API environment. Once
// expanded it equals inventory/kube.NodeID(podIP, pod, namespace,
// clusterDomain):
//
//	sidecar~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.<clusterDomain>
func SidecarNodeID(clusterDomain string) string {
	return nodeID(ref(EnvPodIP), ref(EnvPodName), ref(EnvPodNamespace), clusterDomain)
}

func nodeID(ip, pod, ns, clusterDomain string) string {
	return "sidecar~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc." + clusterDomain
}

func ref(env string) string { return "$(" + env + ")" }

// SidecarBootstrap renders the Envoy bootstrap (YAML) passed to the sidecar
// with --config-yaml: xds.Bootstrap's (ADS to cfg.XDSAddress, admin on
// 127.0.0.1:AdminPort, the outbound port in node metadata) plus a readiness
// listener on 0.0.0.0:ReadyPort that forwards GET /ready to the admin
// interface. The node ID is SidecarNodeID's, so the text holds $(VAR)
// references and is only valid once the kubelet has expanded them; any
// other "$" is escaped as "$$".
func SidecarBootstrap(cfg Config) (string, error) {
	id := nodeID(placeholderPodIP, placeholderPodName, placeholderNamespace, cfg.ClusterDomain)
	y, err := xds.Bootstrap(id, cfg.XDSAddress, xds.BootstrapOptions{
		OutboundPort: cfg.OutboundPort,
		AdminPort:    AdminPort,
	})
	if err != nil {
		return "", fmt.Errorf("inject: sidecar bootstrap: %w", err)
	}
	y, err = addReadiness(y)
	if err != nil {
		return "", fmt.Errorf("inject: sidecar bootstrap: %w", err)
	}
	s := strings.ReplaceAll(string(y), "$", "$$")
	for ph, want := range map[string]int{placeholderPodIP: 1, placeholderPodName: 1, placeholderNamespace: 2} {
		if n := strings.Count(s, ph); n != want {
			return "", fmt.Errorf("inject: sidecar bootstrap: placeholder %s appears %d times, want %d", ph, n, want)
		}
	}
	s = strings.NewReplacer(
		placeholderPodIP, ref(EnvPodIP),
		placeholderPodName, ref(EnvPodName),
		placeholderNamespace, ref(EnvPodNamespace),
	).Replace(s)
	return s, nil
}

// ParseBootstrap decodes a bootstrap in YAML (or JSON) strictly and
// validates it, and every message packed in an Any inside it.
func ParseBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := xds.ValidateDeep(b, "bootstrap"); err != nil {
		return nil, err
	}
	return b, nil
}

// addReadiness adds the readiness listener and the admin cluster it routes
// to, and validates the result.
func addReadiness(y []byte) ([]byte, error) {
	b, err := ParseBootstrap(y)
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: readyListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: readyListenerName,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    readyListenerName,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					// Only GET /ready reaches the admin interface: the rest of
					// it (config dumps, /quitquitquit) stays on loopback.
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Path{Path: "/ready"},
						Headers: []*routev3.HeaderMatcher{{
							Name: ":method",
							HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
								MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"},
							}},
						}},
					},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: adminClusterName},
					}},
				}},
			}},
		}},
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm.HttpFilters = []*hcmv3.HttpFilter{{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
	}}
	hcmAny, err := anypb.New(hcm)
	if err != nil {
		return nil, err
	}
	if b.StaticResources == nil {
		b.StaticResources = &bootstrapv3.Bootstrap_StaticResources{}
	}
	b.StaticResources.Listeners = append(b.StaticResources.Listeners, &listenerv3.Listener{
		Name:    readyListenerName,
		Address: socketAddress("0.0.0.0", ReadyPort),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	})
	b.StaticResources.Clusters = append(b.StaticResources.Clusters, &clusterv3.Cluster{
		Name:                 adminClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: adminClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress("127.0.0.1", AdminPort),
					}},
				}},
			}},
		},
	})
	if err := xds.ValidateDeep(b, "bootstrap"); err != nil {
		return nil, err
	}
	j, err := protojson.Marshal(b)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
