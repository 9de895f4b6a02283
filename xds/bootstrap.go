package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"
)

// XDSClusterName is the bootstrap's static cluster pointing at egressguard.
const XDSClusterName = "egressguard_xds"

// BootstrapOptions are the optional parts of a sidecar bootstrap.
type BootstrapOptions struct {
	// Cluster is the Envoy service cluster (node.cluster); default "egressguard".
	Cluster string
	// OutboundPort is written into node metadata (EGRESSGUARD_OUTBOUND_PORT).
	OutboundPort uint32
	// AdminPort, when set, enables Envoy's admin on 127.0.0.1:AdminPort.
	AdminPort uint32
	// TLS to the control plane: CA to verify it, and a client certificate
	// for mTLS. All file paths inside the sidecar.
	CAFile, CertFile, KeyFile string
	// CAPEM is the CA to verify the control plane, inline (PEM) instead of
	// CAFile: an injected sidecar has no file of egressguard's to read.
	CAPEM []byte
	// ServerName is the SNI of the control plane and the name its
	// certificate must carry as a subject alternative name (default: the
	// host of xdsAddress).
	ServerName string
	// ReadinessPort, when set (it needs AdminPort), adds a listener on
	// 0.0.0.0:ReadinessPort that forwards only GET /ready to the admin
	// interface: the kubelet probes the pod IP, never its loopback, and the
	// rest of the admin interface (config dumps, /quitquitquit) must stay on
	// loopback.
	ReadinessPort uint32
}

// Names of the static resources behind BootstrapOptions.ReadinessPort.
const (
	readyListenerName = "egressguard_ready"
	adminClusterName  = "egressguard_admin"
)

// Bootstrap renders the Envoy bootstrap (YAML) a sidecar needs to fetch its
// configuration over ADS from xdsAddress ("host:port"). The result is
// validated (ValidateAll and every Any inside) before it is returned.
func Bootstrap(nodeID, xdsAddress string, o BootstrapOptions) ([]byte, error) {
	host, port, errs := checkXDSServer(nodeID, xdsAddress)
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert file and key file go together"))
	}
	if o.CAFile != "" && len(o.CAPEM) > 0 {
		errs = append(errs, errors.New("tls: CA file and inline CA are exclusive"))
	}
	if o.OutboundPort > 65535 || o.AdminPort > 65535 || o.ReadinessPort > 65535 {
		errs = append(errs, errors.New("ports must be at most 65535"))
	}
	if o.ReadinessPort != 0 && (o.AdminPort == 0 || o.ReadinessPort == o.AdminPort) {
		errs = append(errs, errors.New("readiness port: needs an admin port of its own"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	if o.Cluster == "" {
		o.Cluster = "egressguard"
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	h2, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	xdsCluster := &clusterv3.Cluster{
		Name:                          XDSClusterName,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:                durationpb.New(5 * time.Second),
		LoadAssignment:                singleEndpoint(XDSClusterName, host, port, ""),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
	}
	if o.CAFile != "" || len(o.CAPEM) > 0 || o.CertFile != "" {
		sni := o.ServerName
		if sni == "" {
			sni = host
		}
		ctx := &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{}}
		if o.CAFile != "" || len(o.CAPEM) > 0 {
			ca := &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: o.CAFile}}
			if len(o.CAPEM) > 0 {
				ca = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: o.CAPEM}}
			}
			// Envoy checks only the chain unless told which name to
			// expect: the certificate must name the control plane.
			san := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sni}}}
			if _, err := netip.ParseAddr(sni); err == nil {
				san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
			}
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 ca,
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
			}}
		}
		if o.CertFile != "" {
			ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: o.CertFile}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: o.KeyFile}},
			}}
		}
		xdsCluster.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
	}
	grpcService := []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}}}}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{
			Id:      nodeID,
			Cluster: o.Cluster,
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				MetaOutboundPort: structpb.NewStringValue(strconv.Itoa(int(o.OutboundPort))),
			}},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices:        grpcService,
			},
			LdsConfig: adsConfigSource(),
			CdsConfig: adsConfigSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xdsCluster}},
	}
	if o.AdminPort != 0 {
		b.Admin = &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", o.AdminPort)}
	}
	if o.ReadinessPort != 0 {
		l, c := readiness(o.ReadinessPort, o.AdminPort)
		b.StaticResources.Listeners = append(b.StaticResources.Listeners, l)
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, c)
	}
	if err := ValidateDeep(b, "bootstrap"); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	j, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	out, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	return out, nil
}

// readiness is the listener on 0.0.0.0:port that forwards GET /ready, and
// nothing else, to the admin interface on 127.0.0.1:adminPort, and the
// cluster it routes to.
func readiness(port, adminPort uint32) (*listenerv3.Listener, *clusterv3.Cluster) {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: readyListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: readyListenerName,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    readyListenerName,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
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
		HttpFilters: []*hcmv3.HttpFilter{httpFilter(routerFilterName, &routerv3.Router{})},
	}
	l := &listenerv3.Listener{
		Name:    readyListenerName,
		Address: socketAddress("0.0.0.0", port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{networkFilter("envoy.filters.network.http_connection_manager", hcm)},
		}},
	}
	c := &clusterv3.Cluster{
		Name:                 adminClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: adminClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress("127.0.0.1", adminPort),
					}},
				}},
			}},
		},
	}
	return l, c
}
