package xds

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestWireCodecRoundTrip(t *testing.T) {
	route := mustAny(&routev3.RouteConfiguration{Name: "http", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}}}})
	empty := &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"}
	unknown := mustAny(&routev3.RouteConfiguration{Name: "u"})
	unknown.ProtoReflect().SetUnknown(protowire.AppendTag(nil, 99, protowire.VarintType))
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(unknown.ProtoReflect().GetUnknown(), 7))
	big := mustAny(&routev3.RouteConfiguration{Name: string(make([]byte, 70000))})
	ctl := &corev3.ControlPlane{Identifier: "egressguard"}
	tests := []struct {
		name   string
		msg    proto.Message
		shared bool // resources' bytes referenced, not copied
	}{
		{"sotw", &discoveryv3.DiscoveryResponse{VersionInfo: "v1", Resources: []*anypb.Any{route, big}, TypeUrl: route.TypeUrl, Nonce: "7", ControlPlane: ctl}, true},
		{"sotw empty value", &discoveryv3.DiscoveryResponse{VersionInfo: "v1", Resources: []*anypb.Any{empty, route, empty}, Nonce: "1"}, true},
		{"sotw no resources", &discoveryv3.DiscoveryResponse{VersionInfo: "v1", TypeUrl: route.TypeUrl, Nonce: "2"}, false},
		{"sotw unknown fields: stock codec", &discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{route, unknown}}, false},
		{"delta", &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "s", TypeUrl: route.TypeUrl, Nonce: "3", RemovedResources: []string{"gone"},
			Resources: []*discoveryv3.Resource{
				{Name: "http", Version: "a", Resource: route, Aliases: []string{"x"}, Ttl: durationpb.New(5)},
				{Name: "big", Version: "b", Resource: big},
				{Name: "empty", Version: "c", Resource: empty},
			}}, true},
		{"delta resource without Any: stock codec", &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{{Name: "n"}}}, false},
		{"request: stock codec", &discoveryv3.DiscoveryRequest{VersionInfo: "v", ResourceNames: []string{"a"}}, false},
	}
	c := newWireCodec()
	assert.Equal(t, "proto", c.Name())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.Marshal(tt.msg)
			require.NoError(t, err)
			wire := out.Materialize()
			got := tt.msg.ProtoReflect().New().Interface()
			require.NoError(t, proto.Unmarshal(wire, got))
			assert.True(t, proto.Equal(tt.msg, got), "decoded %v, want %v", got, tt.msg)
			// And through the codec's own Unmarshal, as a request would be.
			got2 := tt.msg.ProtoReflect().New().Interface()
			require.NoError(t, c.Unmarshal(out, got2))
			assert.True(t, proto.Equal(tt.msg, got2))
			// Same size as the stock encoding (only the field order differs).
			assert.Len(t, wire, proto.Size(tt.msg))
			referenced := false
			for _, b := range out {
				if len(b.ReadOnlyData()) > 0 && len(big.Value) > 0 && &b.ReadOnlyData()[0] == &big.Value[0] {
					referenced = true
				}
			}
			if tt.shared && tt.name != "sotw empty value" {
				assert.True(t, referenced, "the resource's bytes are referenced, not copied")
			} else {
				assert.False(t, referenced)
			}
		})
	}
}

// TestWireCodecOverGRPC: what a client decodes from the server (state of
// the world and delta, every type) equals the node's snapshot.
func TestWireCodecOverGRPC(t *testing.T) {
	env := startADS(t, Defaults(), smallSpec, "node-a")
	conn := dial(t, env.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := func(t *testing.T, typ string) map[string]proto.Message {
		t.Helper()
		snap := env.enf.NodeSnapshot("node-a")
		require.NotNil(t, snap)
		return snap.Resources(typ)
	}
	types := []string{resourcev3.ListenerType, resourcev3.ClusterType}
	t.Run("state of the world", func(t *testing.T) {
		st := adsStream(t, conn)
		for _, typ := range types {
			require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: typ}))
			resp, err := st.Recv()
			require.NoError(t, err)
			require.Equal(t, typ, resp.TypeUrl)
			exp := want(t, typ)
			require.Len(t, resp.Resources, len(exp))
			for _, a := range resp.Resources {
				m, err := a.UnmarshalNew()
				require.NoError(t, err)
				name := m.(interface{ GetName() string }).GetName()
				assert.True(t, proto.Equal(exp[name], m), "%s %s", typ, name)
			}
		}
	})
	t.Run("delta", func(t *testing.T) {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		require.NoError(t, err)
		for _, typ := range types {
			require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: typ}))
			resp, err := st.Recv()
			require.NoError(t, err)
			require.Equal(t, typ, resp.TypeUrl)
			exp := want(t, typ)
			require.Len(t, resp.Resources, len(exp))
			for _, r := range resp.Resources {
				m, err := r.Resource.UnmarshalNew()
				require.NoError(t, err)
				assert.True(t, proto.Equal(exp[r.Name], m), "%s %s", typ, r.Name)
				assert.NotEmpty(t, r.Version)
			}
		}
	})
}

// FuzzWireCodec: whatever the resources' bytes, the codec's encoding of a
// state-of-the-world or delta response decodes to an equal message.
func FuzzWireCodec(f *testing.F) {
	f.Add("v1", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", []byte{0x0a, 0x04, 'h', 't', 't', 'p'}, []byte{}, "nonce")
	f.Add("", "", []byte{}, []byte{0xff, 0x01}, "")
	f.Fuzz(func(t *testing.T, version, typeURL string, v1, v2 []byte, nonce string) {
		c := newWireCodec()
		anys := []*anypb.Any{{TypeUrl: typeURL, Value: v1}, {Value: v2}, {TypeUrl: typeURL}}
		msgs := []proto.Message{
			&discoveryv3.DiscoveryResponse{VersionInfo: version, Resources: anys, TypeUrl: typeURL, Nonce: nonce},
			&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: version, TypeUrl: typeURL, Nonce: nonce, Resources: []*discoveryv3.Resource{
				{Name: version, Version: nonce, Resource: anys[0]}, {Name: typeURL, Resource: anys[1]},
			}},
		}
		for _, m := range msgs {
			out, err := c.Marshal(m)
			if err != nil {
				// Invalid UTF-8 in a string field: the stock codec refuses it too.
				_, stockErr := c.base.Marshal(m)
				require.Error(t, stockErr, "the codec refused what the stock codec encodes: %v", err)
				return
			}
			got := m.ProtoReflect().New().Interface()
			require.NoError(t, proto.Unmarshal(out.Materialize(), got))
			require.True(t, proto.Equal(m, got), "decoded %v, want %v", got, m)
		}
	})
}
