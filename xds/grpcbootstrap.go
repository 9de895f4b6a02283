package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// GRPCBootstrapOptions are the optional parts of a proxyless gRPC client's
// bootstrap. File paths are as the client process sees them.
type GRPCBootstrapOptions struct {
	// CAFile switches the channel to egressguard from insecure to TLS
	// ("tls" channel credentials) verified against this CA; CertFile and
	// KeyFile add a client certificate (mTLS).
	CAFile, CertFile, KeyFile string
	// TokenFile adds call credentials of type jwt_token_file (gRFC A97): the
	// client sends the token read from this file (a projected
	// ServiceAccount token in Kubernetes) on its xDS stream, so the control
	// plane can check the node's identity. grpc-go sends call credentials
	// only on a secure channel, so it needs CAFile, and reads them only with
	// GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true.
	TokenFile string
}

// Server features egressguard's proxyless clients need.
const (
	// featureXDSv3 asks for the v3 transport protocol.
	featureXDSv3 = "xds_v3"
	// featureTrustedServer lets the routes rewrite :authority (gRFC A81,
	// with GRPC_EXPERIMENTAL_XDS_AUTHORITY_REWRITE=true): a redirect to a
	// sandbox sends the sandbox's own name, not the live one.
	featureTrustedServer = "trusted_xds_server"
)

type grpcBootstrap struct {
	XDSServers []grpcXDSServer `json:"xds_servers"`
	Node       grpcNode        `json:"node"`
}

type grpcXDSServer struct {
	ServerURI      string      `json:"server_uri"`
	ChannelCreds   []grpcCreds `json:"channel_creds"`
	CallCreds      []grpcCreds `json:"call_creds,omitempty"`
	ServerFeatures []string    `json:"server_features"`
}

type grpcCreds struct {
	Type   string            `json:"type"`
	Config map[string]string `json:"config,omitempty"`
}

type grpcNode struct {
	ID string `json:"id"`
}

// GRPCBootstrap renders the bootstrap JSON (grpc-go's format, read from the
// file GRPC_XDS_BOOTSTRAP names or from GRPC_XDS_BOOTSTRAP_CONFIG) of a
// proxyless gRPC client that gets its configuration over ADS from
// xdsAddress ("host:port") as node nodeID.
func GRPCBootstrap(nodeID, xdsAddress string, o GRPCBootstrapOptions) ([]byte, error) {
	_, _, errs := checkXDSServer(nodeID, xdsAddress)
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("cert file and key file go together"))
	}
	if o.CertFile != "" && o.CAFile == "" {
		errs = append(errs, errors.New("a client certificate needs the CA file (TLS) too"))
	}
	if o.TokenFile != "" && o.CAFile == "" {
		errs = append(errs, errors.New("token file: grpc-go sends call credentials only over TLS; set the CA file"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("xds: grpc bootstrap: %w", err)
	}
	srv := grpcXDSServer{
		ServerURI:      xdsAddress,
		ChannelCreds:   []grpcCreds{{Type: "insecure"}},
		ServerFeatures: []string{featureXDSv3, featureTrustedServer},
	}
	if o.CAFile != "" {
		cfg := map[string]string{"ca_certificate_file": o.CAFile}
		if o.CertFile != "" {
			cfg["certificate_file"], cfg["private_key_file"] = o.CertFile, o.KeyFile
		}
		srv.ChannelCreds = []grpcCreds{{Type: "tls", Config: cfg}}
	}
	if o.TokenFile != "" {
		srv.CallCreds = []grpcCreds{{Type: "jwt_token_file", Config: map[string]string{"jwt_token_file": o.TokenFile}}}
	}
	b, err := json.MarshalIndent(grpcBootstrap{XDSServers: []grpcXDSServer{srv}, Node: grpcNode{ID: nodeID}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("xds: grpc bootstrap: %w", err)
	}
	return append(b, '\n'), nil
}

// checkXDSServer checks what every bootstrap needs, the node ID and the
// control plane's "host:port", and returns the address's parts.
func checkXDSServer(nodeID, xdsAddress string) (string, uint32, []error) {
	var errs []error
	if nodeID == "" {
		errs = append(errs, errors.New("node id: must not be empty"))
	}
	host, portStr, err := net.SplitHostPort(xdsAddress)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || host == "" || perr != nil || port == 0 {
		errs = append(errs, fmt.Errorf("xds address: %q is not host:port", xdsAddress))
	}
	return host, uint32(port), errs
}
