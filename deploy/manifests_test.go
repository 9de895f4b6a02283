// Package deploy holds the Kubernetes manifests (Helm chart, kustomize base
// and overlays), the Grafana dashboard and the CoreDNS snippet. Its tests
// render the chart and build the kustomize trees with the real libraries,
// decode every object strictly into its API type and check what the pieces
// promise each other (names, ports, selectors, config keys).
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest: a typed client-go object, or one of the
// strict structs below for kinds client-go does not know.
type object struct {
	GVK    schema.GroupVersionKind
	Name   string
	NS     string
	Obj    any
	Source string // template or file it came from, for messages
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.GVK.Kind, o.NS, o.Name, o.Source)
}

// The kinds outside client-go's scheme that the manifests use. Each struct
// carries only the fields the manifests set; decoding is strict, so a field
// the struct does not know (a typo, or a new field nobody checked) fails.
var extraKinds = map[schema.GroupVersionKind]func() any{
	{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}:               func() any { return &cmIssuer{} },
	{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}:          func() any { return &cmCertificate{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return &serviceMonitor{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return &prometheusRule{} },
}

type cmIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

type cmCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames,omitempty"`
			Any        bool     `json:"any,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// strictDecoder decodes YAML into client-go's types and fails on unknown
// and duplicate fields.
func strictDecoder() *kjson.Serializer {
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// decodeManifests splits a multi-document stream and decodes every
// document; empty documents (comments only) are skipped, anything else that
// does not decode strictly is an error. All problems are returned.
func decodeManifests(source string, stream []byte) ([]object, error) {
	dec := strictDecoder()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []object
	var errs []error
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if isEmptyDoc(doc) {
			continue
		}
		o, err := decodeOne(dec, doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", source, i, err))
			continue
		}
		o.Source = source
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

func decodeOne(dec *kjson.Serializer, doc []byte) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return object{}, errors.New("apiVersion and kind are required")
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	if mk, ok := extraKinds[gvk]; ok {
		v := mk()
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return object{}, fmt.Errorf("%s: %w", gvk, err)
		}
		meta := v.(metav1.ObjectMetaAccessor).GetObjectMeta()
		return object{GVK: gvk, Name: meta.GetName(), NS: meta.GetNamespace(), Obj: v}, nil
	}
	if !scheme.Scheme.Recognizes(gvk) {
		return object{}, fmt.Errorf("%s: no API type to decode it into (add a strict struct to extraKinds)", gvk)
	}
	obj, _, err := dec.Decode(doc, nil, nil)
	if err != nil {
		// Strict errors (unknown or duplicate fields) come back with the
		// object decoded: they are errors all the same.
		return object{}, fmt.Errorf("%s: %w", gvk, err)
	}
	acc, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return object{}, fmt.Errorf("%s: not an object with metadata", gvk)
	}
	meta := acc.GetObjectMeta()
	return object{GVK: gvk, Name: meta.GetName(), NS: meta.GetNamespace(), Obj: obj}, nil
}

func isEmptyDoc(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// find returns the objects of one kind; the test fails on a type mismatch.
func find[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the single object of a kind with the given name.
func one[T runtime.Object](t *testing.T, objs []object, name string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok && o.Name == name {
			found = append(found, v)
		}
	}
	require.Lenf(t, found, 1, "want exactly one %T named %q", *new(T), name)
	return found[0]
}
