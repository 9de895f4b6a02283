package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/egressguard/egressguard/internal/certreload"
	"github.com/egressguard/egressguard/internal/tlsprofile"
)

// Server serves ADS (state of the world and delta) and the separate LDS,
// RDS, CDS and EDS services from an Enforcer's snapshots.
type Server struct {
	cfg     Config
	enf     *Enforcer
	log     *zap.Logger
	metrics *Metrics
	grpc    *grpc.Server

	mu     sync.Mutex
	open   map[int64]bool
	opened int64 // streams ever accepted
}

// NewServer builds the gRPC server (TLS per cfg.TLS). Run or Serve starts it.
// extra are further server options (the node identity guard's interceptor).
func NewServer(ctx context.Context, cfg Config, enf *Enforcer, log *zap.Logger, extra ...grpc.ServerOption) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, enf: enf, log: log, metrics: enf.metrics, open: map[int64]bool{}}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(cfg.MaxStreams)),
		// Per-connection buffers dominate the memory of an idle stream:
		// clients send small requests (4 KiB read buffer), and the write
		// buffer goes back to a shared pool after each flush.
		grpc.ReadBufferSize(4 << 10),
		grpc.WriteBufferSize(64 << 10),
		// Resources are marshalled once per snapshot; the codec sends the
		// shared bytes instead of re-marshalling them per stream.
		grpc.ForceServerCodecV2(newWireCodec()),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.TLS.Enabled() {
		tc, err := serverTLS(cfg.TLS, s.metrics, log)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s.grpc = grpc.NewServer(append(opts, extra...)...)
	go enf.watchCertificates(ctx)
	xs := serverv3.NewServer(ctx, enf.cache, s)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(s.grpc, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(s.grpc, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(s.grpc, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.grpc, xs)
	return s, nil
}

// serverTLS is the server side of xDS TLS. The certificate pair is re-read
// when it changes on disk (a cert-manager or Secret renewal needs no
// restart); a pair that does not load keeps the last good one.
func serverTLS(c TLSConfig, m *Metrics, log *zap.Logger) (*tls.Config, error) {
	certs, err := certreload.New("xds.tls", c.CertFile, c.KeyFile, m.certReloaded, log)
	if err != nil {
		return nil, err
	}
	tc := tlsprofile.Server(&tls.Config{GetCertificate: certs.GetCertificate})
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("xds.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("xds.tls.client_ca_file: %s: no PEM certificates", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Run listens on cfg.Listen and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("xds: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves on lis until ctx is done, then stops gracefully (bounded).
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.log.Info("xDS server listening", zap.String("addr", lis.Addr().String()), zap.Bool("tls", s.cfg.TLS.Enabled()))
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("xds: serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	<-errc //nolint:errcheck // Serve's error after Stop is expected
	return nil
}

// StreamsOpened is the number of streams accepted since start.
func (s *Server) StreamsOpened() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

// Name is the runner name.
func (s *Server) Name() string { return "xds" }

// Callbacks (serverv3.Callbacks).

func (s *Server) openStream(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.open) >= s.cfg.MaxStreams {
		s.metrics.streamsRefuse.Inc()
		return status.Errorf(codes.ResourceExhausted, "xds: stream limit %d reached", s.cfg.MaxStreams)
	}
	s.open[id] = true
	s.opened++
	s.metrics.streams.Set(float64(len(s.open)))
	return nil
}

func (s *Server) closeStream(id int64) {
	s.mu.Lock()
	if s.open[id] {
		delete(s.open, id)
		s.metrics.streams.Set(float64(len(s.open)))
	}
	s.mu.Unlock()
	s.enf.streamClosed(id)
}

func (s *Server) onRequest(id int64, node *corev3.Node, typeURL string, names []string) error {
	if node.GetId() == "" {
		s.metrics.streamsRefuse.Inc()
		return status.Error(codes.InvalidArgument, "xds: node.id is required")
	}
	if err := s.enf.streamNode(id, node); err != nil {
		return status.Errorf(codes.InvalidArgument, "xds: %v", err)
	}
	s.enf.requested(id, typeURL, names)
	return nil
}

// OnStreamOpen implements serverv3.Callbacks.
func (s *Server) OnStreamOpen(_ context.Context, id int64, _ string) error { return s.openStream(id) }

// OnStreamClosed implements serverv3.Callbacks.
func (s *Server) OnStreamClosed(id int64, _ *corev3.Node) { s.closeStream(id) }

// OnStreamRequest implements serverv3.Callbacks.
func (s *Server) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	return s.onRequest(id, req.GetNode(), req.GetTypeUrl(), req.GetResourceNames())
}

// OnStreamResponse implements serverv3.Callbacks.
func (s *Server) OnStreamResponse(ctx context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, _ *discoveryv3.DiscoveryResponse) {
	s.observePush(ctx)
}

// OnFetchRequest implements serverv3.Callbacks: REST is refused.
func (s *Server) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "xds: REST fetch is not served")
}

// OnFetchResponse implements serverv3.Callbacks.
func (s *Server) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// deltaStream maps a delta stream's ID into a space of its own:
// go-control-plane numbers state-of-the-world and delta streams with two
// separate counters (pkg/server/sotw/v3/xds.go and
// pkg/server/delta/v3/server.go both start at 1), so without this the
// first delta stream and the first SotW stream share ID 1, and the close
// of one unregisters the other's node: a stream left connected with no
// node stops receiving policy updates.
func deltaStream(id int64) int64 { return -id }

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (s *Server) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	return s.openStream(deltaStream(id))
}

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (s *Server) OnDeltaStreamClosed(id int64, _ *corev3.Node) { s.closeStream(deltaStream(id)) }

// OnStreamDeltaRequest implements serverv3.Callbacks. The delta server calls
// it before it copies the stream's node into later requests.
func (s *Server) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	id = deltaStream(id)
	node := req.GetNode()
	if node == nil {
		s.enf.mu.Lock()
		nid, ok := s.enf.streams[id]
		s.enf.mu.Unlock()
		if !ok {
			s.metrics.streamsRefuse.Inc()
			return status.Error(codes.InvalidArgument, "xds: the first request of a stream must carry node.id")
		}
		node = &corev3.Node{Id: nid}
	}
	return s.onRequest(id, node, req.GetTypeUrl(), req.GetResourceNamesSubscribe())
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (s *Server) OnStreamDeltaResponse(int64, *discoveryv3.DeltaDiscoveryRequest, *discoveryv3.DeltaDiscoveryResponse) {
	// Delta responses carry no context: push latency is observed for SotW only.
}

func (s *Server) observePush(ctx context.Context) {
	if ctx == nil {
		return
	}
	if at, ok := ctx.Value(publishedAtKey{}).(time.Time); ok && !at.IsZero() {
		s.metrics.pushLatency.Observe(time.Since(at).Seconds())
	}
}

var _ serverv3.Callbacks = (*Server)(nil)
