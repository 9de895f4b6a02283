package xds

import corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

// ConnectForBench registers a node as if its first xDS request had arrived
// on stream id, building and publishing its snapshot. For benchmarks and
// load tests that measure the enforcer without gRPC.
func ConnectForBench(e *Enforcer, streamID int64, n *corev3.Node) error {
	return e.streamNode(streamID, n)
}
