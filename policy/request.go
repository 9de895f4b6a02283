package policy

import (
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/egressguard/egressguard/policy/plan"
)

// HTTPRequest is a request as scenarios, `policy eval` and /api/decide give
// it: the method, the raw path and headers by lower-case name. A header
// given more than once holds its values joined by "," (how Envoy's header
// matchers see repeated headers).
type HTTPRequest struct {
	Method  string
	Path    string
	Headers map[string]string
}

// AddHeader adds one "Name: value" line (SetHeader).
func (r *HTTPRequest) AddHeader(line string) error {
	name, value, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("bad header %q (want \"Name: value\")", redactHeaderLine(line))
	}
	r.SetHeader(name, strings.TrimSpace(value))
	return nil
}

// SetHeader adds a value to a header, joining it to earlier ones with ",".
func (r *HTTPRequest) SetHeader(name, value string) {
	if r.Headers == nil {
		r.Headers = make(map[string]string)
	}
	name = strings.ToLower(name)
	if prev, ok := r.Headers[name]; ok {
		value = prev + "," + value
	}
	r.Headers[name] = value
}

// redactHeaderLine keeps a header's name only: a malformed line may still
// hold a credential.
func redactHeaderLine(line string) string {
	if name, _, ok := strings.Cut(line, ":"); ok {
		return name + ": <redacted>"
	}
	return "<redacted>"
}

// Plan is the plan's view of the request.
func (r HTTPRequest) Plan() plan.Request {
	return plan.Request{Method: r.Method, Path: r.Path, Header: func(name string) (string, bool) {
		v, ok := r.Headers[name]
		return v, ok
	}}
}

// regoInput is input.request of data.egressguard.request_decision: the path
// in normal form (absent when it has none).
func (r HTTPRequest) regoInput() ast.Object {
	h := ast.NewObject()
	for k, v := range r.Headers {
		h.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	o := ast.NewObject(
		ast.Item(ast.StringTerm("method"), ast.StringTerm(r.Method)),
		ast.Item(ast.StringTerm("headers"), ast.NewTerm(h)),
	)
	if p, ok := plan.NormalizePath(r.Path); ok {
		o.Insert(ast.StringTerm("path"), ast.StringTerm(p))
	}
	return o
}

// CredentialRecord is what records, logs and output may say about the
// credential a request rule recognised: its kind and a fingerprint
// (plan.CredentialFingerprint), never its value.
type CredentialRecord struct {
	Kind        string `json:"kind"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Credential is the credential record of d for r, nil when the deciding
// request rule names no credential kind.
func Credential(d plan.RequestDecision, r plan.Request) *CredentialRecord {
	if d.Request == nil || d.Request.Credential == "" {
		return nil
	}
	c := &CredentialRecord{Kind: d.Request.Credential}
	if v, ok := d.CredentialValue(r); ok {
		c.Fingerprint = plan.CredentialFingerprint(v)
	}
	return c
}

// RequestEnforcedBy names the enforcement point that decides a request to a
// host whose plan rule is r: the sidecar per request when r has request
// rules; otherwise the connection-level points (plan.EnforcedBy), which for a
// host with catalog request rules and a class without the sidecar means the
// DNS fallback.
func RequestEnforcedBy(r *plan.Rule) []string {
	if r.Requests != nil {
		return []string{plan.EnforcedBySidecar + " (per request, TLS terminated with the staging CA)"}
	}
	return plan.EnforcedBy(r)
}
