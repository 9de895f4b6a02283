package policy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egressguard/egressguard/inventory"
)

// classSpec is what the policy declares it reads of a workload besides the
// environment.
type classSpec struct {
	labels    []string // sorted
	name      bool
	namespace bool
	all       bool // the policy declared nothing: every label, name and namespace
}

// classFieldKind names one part of a workload class.
type classFieldKind byte

const (
	classEnv       classFieldKind = 'e'
	classSidecar   classFieldKind = 'c'
	className      classFieldKind = 'n'
	classNamespace classFieldKind = 's'
	classLabel     classFieldKind = 'l'
)

// fields is the one definition of a workload's class: it calls emit for
// every part of w the policy reads, in canonical order (the environment,
// whether it runs the sidecar (only when it does, value "true"), the name,
// the namespace, then labels by key). The cache key, the Rego input
// and the readable description are all built from these calls and nothing
// else, so they cannot disagree: two workloads with the same key see the
// same input, which is what makes sharing one cached plan per key safe.
// key is the label key for classLabel and empty otherwise.
//
// emit does not escape, so a caller's closure stays on its stack.
func (c *classSpec) fields(w *inventory.Workload, emit func(kind classFieldKind, key, value string)) {
	emit(classEnv, "", w.Environment)
	if w.Sidecar {
		emit(classSidecar, "", "true")
	}
	if c.all || c.name {
		emit(className, "", w.Name)
	}
	if c.all || c.namespace {
		emit(classNamespace, "", w.Namespace)
	}
	if !c.all {
		for _, k := range c.labels {
			if v, ok := w.Labels[k]; ok {
				emit(classLabel, k, v)
			}
		}
		return
	}
	keys := make([]string, 0, len(w.Labels))
	for k := range w.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		emit(classLabel, k, w.Labels[k])
	}
}

// appendKeyField writes one field of a class key: its kind, then each
// string as its length, ':' and its bytes. Length prefixes make the key
// injective whatever bytes a label or environment carries (a value cannot
// forge the start of another field).
func appendKeyField(b []byte, kind classFieldKind, key, value string) []byte {
	b = append(b, byte(kind))
	if kind == classLabel {
		b = strconv.AppendInt(b, int64(len(key)), 10)
		b = append(b, ':')
		b = append(b, key...)
	}
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, ':')
	return append(b, value...)
}

// classKey is w's plan-cache key (the cache-hit path: no Rego input built).
func (c *classSpec) classKey(w *inventory.Workload) string {
	var buf [128]byte
	b := buf[:0]
	c.fields(w, func(kind classFieldKind, key, value string) {
		b = appendKeyField(b, kind, key, value)
	})
	return string(b)
}

// classOf returns w's class key and the input the policy sees for it, in
// one pass over fields.
func (c *classSpec) classOf(w *inventory.Workload) (string, ast.Value) {
	var b []byte
	wl := ast.NewObject()
	labels := ast.NewObject()
	c.fields(w, func(kind classFieldKind, key, value string) {
		b = appendKeyField(b, kind, key, value)
		switch kind {
		case classEnv:
			wl.Insert(ast.StringTerm("environment"), ast.StringTerm(value))
		case classSidecar:
			wl.Insert(ast.StringTerm("sidecar"), ast.BooleanTerm(true))
		case className:
			wl.Insert(ast.StringTerm("name"), ast.StringTerm(value))
		case classNamespace:
			wl.Insert(ast.StringTerm("namespace"), ast.StringTerm(value))
		case classLabel:
			labels.Insert(ast.StringTerm(key), ast.StringTerm(value))
		}
	})
	wl.Insert(ast.StringTerm("labels"), ast.NewTerm(labels))
	return string(b), ast.NewObject(ast.Item(ast.StringTerm("workload"), ast.NewTerm(wl)))
}

// classDescription renders w's class readably (see Engine.ClassDescription),
// e.g. `staging{name="web", namespace="shop", label:app="web"}`.
func (c *classSpec) classDescription(w *inventory.Workload) string {
	var env string
	var parts []string
	c.fields(w, func(kind classFieldKind, key, value string) {
		switch kind {
		case classEnv:
			env = quoteUnlessPlain(value)
		case classSidecar:
			parts = append(parts, "sidecar")
		case className:
			parts = append(parts, "name="+strconv.Quote(value))
		case classNamespace:
			parts = append(parts, "namespace="+strconv.Quote(value))
		case classLabel:
			parts = append(parts, "label:"+quoteUnlessPlain(key)+"="+strconv.Quote(value))
		}
	})
	return env + "{" + strings.Join(parts, ", ") + "}"
}

// quoteUnlessPlain leaves names made of letters, digits and "-_./" as they
// are (every Kubernetes label key and environment name) and quotes anything
// else, so that no value can pass for the description's punctuation.
func quoteUnlessPlain(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/') {
			return strconv.Quote(s)
		}
	}
	return s
}
