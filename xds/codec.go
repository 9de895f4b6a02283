package xds

import (
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Field numbers the codec writes by hand, taken from the descriptors.
var (
	sotwResourcesField  = fieldNumber(&discoveryv3.DiscoveryResponse{}, "resources")
	deltaResourcesField = fieldNumber(&discoveryv3.DeltaDiscoveryResponse{}, "resources")
	resourceAnyField    = fieldNumber(&discoveryv3.Resource{}, "resource")
	anyTypeURLField     = fieldNumber(&anypb.Any{}, "type_url")
	anyValueField       = fieldNumber(&anypb.Any{}, "value")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// wireCodec is the xDS server's gRPC codec. Responses carry resources that
// were marshalled once per snapshot and are shared by every stream; the
// stock codec would copy every resource's bytes into a fresh buffer per
// stream (about 1 MB per sidecar per policy change, 1 GB for 1,000
// sidecars). wireCodec writes a discovery response as its small envelope,
// marshalled per stream, followed by the resources field: a few bytes of
// framing per resource and the shared bytes themselves, referenced, not
// copied. Protobuf parsers accept fields in any order and keep a repeated
// field's elements in the order they appear, so the result decodes to a
// message equal to the response. Everything else, and any response whose
// resources carry unknown fields, goes through the stock codec.
type wireCodec struct{ base encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{base: encoding.GetCodecV2(protocodec.Name)} }

// Name is the stock codec's ("proto"): clients see no difference.
func (c wireCodec) Name() string { return c.base.Name() }

// Unmarshal decodes requests with the stock codec.
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

// Marshal encodes v, sharing the bytes of discovery responses' resources.
func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *discoveryv3.DiscoveryResponse:
		if out, ok, err := marshalSotW(m); ok || err != nil {
			return out, err
		}
	case *discoveryv3.DeltaDiscoveryResponse:
		if out, ok, err := marshalDelta(m); ok || err != nil {
			return out, err
		}
	}
	return c.base.Marshal(v)
}

// withoutField returns a shallow copy of m without one field (every other
// field, and unknown fields, kept).
func withoutField[M proto.Message](m M, n protowire.Number) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != n {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return dst.Interface().(M)
}

// plainAny reports whether a's wire form is exactly its type URL and value.
func plainAny(a *anypb.Any) bool { return a != nil && len(a.ProtoReflect().GetUnknown()) == 0 }

// appendAnyHeader appends, for an Any embedded as field n, everything that
// precedes the value's bytes: field tag and length, the type URL, the value's
// tag and length. The value follows it on the wire.
func appendAnyHeader(b []byte, n protowire.Number, a *anypb.Any) []byte {
	size := anyHeaderSize(a) + len(a.Value)
	b = protowire.AppendTag(b, n, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	if a.TypeUrl != "" {
		b = protowire.AppendTag(b, anyTypeURLField, protowire.BytesType)
		b = protowire.AppendString(b, a.TypeUrl)
	}
	if len(a.Value) > 0 {
		b = protowire.AppendTag(b, anyValueField, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(a.Value)))
	}
	return b
}

// anyHeaderSize is the size of an Any's fields other than the value's bytes.
func anyHeaderSize(a *anypb.Any) int {
	n := 0
	if a.TypeUrl != "" {
		n += protowire.SizeTag(anyTypeURLField) + protowire.SizeBytes(len(a.TypeUrl))
	}
	if len(a.Value) > 0 {
		n += protowire.SizeTag(anyValueField) + protowire.SizeVarint(uint64(len(a.Value)))
	}
	return n
}

// marshalSotW encodes a state-of-the-world response; ok is false when it
// must be left to the stock codec.
func marshalSotW(m *discoveryv3.DiscoveryResponse) (mem.BufferSlice, bool, error) {
	if len(m.Resources) == 0 {
		return nil, false, nil
	}
	for _, a := range m.Resources {
		if !plainAny(a) {
			return nil, false, nil
		}
	}
	head, err := proto.Marshal(withoutField(m, sotwResourcesField))
	if err != nil {
		return nil, false, fmt.Errorf("xds: marshal discovery response: %w", err)
	}
	out := make(mem.BufferSlice, 0, 1+2*len(m.Resources))
	for _, a := range m.Resources {
		head = appendAnyHeader(head, sotwResourcesField, a)
		if len(a.Value) == 0 {
			continue
		}
		out = append(out, mem.SliceBuffer(head))
		out = append(out, mem.SliceBuffer(a.Value))
		head = head[len(head):]
	}
	if len(head) > 0 {
		out = append(out, mem.SliceBuffer(head))
	}
	return out, true, nil
}

// marshalDelta encodes an incremental response the same way: each Resource
// is its envelope (name, version...) followed by its Any.
func marshalDelta(m *discoveryv3.DeltaDiscoveryResponse) (mem.BufferSlice, bool, error) {
	if len(m.Resources) == 0 {
		return nil, false, nil
	}
	for _, r := range m.Resources {
		if r == nil || !plainAny(r.Resource) {
			return nil, false, nil
		}
	}
	head, err := proto.Marshal(withoutField(m, deltaResourcesField))
	if err != nil {
		return nil, false, fmt.Errorf("xds: marshal delta discovery response: %w", err)
	}
	out := make(mem.BufferSlice, 0, 1+2*len(m.Resources))
	for _, r := range m.Resources {
		env, err := proto.Marshal(withoutField(r, resourceAnyField))
		if err != nil {
			return nil, false, fmt.Errorf("xds: marshal delta resource %s: %w", r.Name, err)
		}
		a := r.Resource
		anySize := anyHeaderSize(a) + len(a.Value)
		size := len(env) + protowire.SizeTag(resourceAnyField) + protowire.SizeBytes(anySize)
		head = protowire.AppendTag(head, deltaResourcesField, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(size))
		head = append(head, env...)
		head = appendAnyHeader(head, resourceAnyField, a)
		if len(a.Value) == 0 {
			continue
		}
		out = append(out, mem.SliceBuffer(head))
		out = append(out, mem.SliceBuffer(a.Value))
		head = head[len(head):]
	}
	if len(head) > 0 {
		out = append(out, mem.SliceBuffer(head))
	}
	return out, true, nil
}
