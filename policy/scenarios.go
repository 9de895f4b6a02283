package policy

import (
	"errors"
	"fmt"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// ScenarioFile is a file of scenarios run by `egressguard policy test`.
type ScenarioFile struct {
	Scenarios []Scenario `yaml:"scenarios"`
}

// Scenario is one expectation: this workload, this destination, this outcome.
type Scenario struct {
	Name     string           `yaml:"name"`
	Workload ScenarioWorkload `yaml:"workload"`
	// Dest is host[:port], IPv4[:port], IPv6 or [IPv6]:port.
	Dest string `yaml:"dest"`
	// Want is allow, deny or redirect (the enforced action).
	Want string `yaml:"want"`
	// Target is the redirect target host[:port] (optional).
	Target string `yaml:"target,omitempty"`
	// Rule is the deciding rule's ID (optional).
	Rule string `yaml:"rule,omitempty"`
	// Request makes the scenario a request decision (plan.DecideRequest).
	Request *ScenarioRequest `yaml:"request,omitempty"`
	// RequestRule is the deciding request rule's ID (optional).
	RequestRule string `yaml:"request_rule,omitempty"`
	// Credential is the credential kind the deciding request rule names
	// (optional).
	Credential string `yaml:"credential,omitempty"`

	// Filled in by ParseScenarios.
	File string             `yaml:"-"`
	Line int                `yaml:"-"`
	dest plan.Destination   `yaml:"-"`
	want plan.Action        `yaml:"-"`
	wl   inventory.Workload `yaml:"-"`
	req  HTTPRequest        `yaml:"-"`
}

// ScenarioRequest is the HTTP request of a request scenario.
type ScenarioRequest struct {
	Method string `yaml:"method,omitempty"`
	Path   string `yaml:"path"`
	// Headers are "Name: value" lines; a repeated name joins its values.
	Headers []string `yaml:"headers,omitempty"`
}

// ScenarioWorkload is the caller of a scenario.
type ScenarioWorkload struct {
	Environment string            `yaml:"environment"`
	Name        string            `yaml:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	// Sidecar: the workload runs the egressguard sidecar.
	Sidecar bool `yaml:"sidecar,omitempty"`
}

// ParseScenarios decodes a scenario file strictly; every problem names the
// file, line and field.
func ParseScenarios(file string, data []byte) ([]Scenario, error) {
	var sf ScenarioFile
	d, err := decodeStrict(file, data, &sf)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i := range sf.Scenarios {
		s := &sf.Scenarios[i]
		p := path{"scenarios", i}
		s.File, s.Line = file, d.line(p)
		if s.Name == "" {
			errs = append(errs, d.errf(p.with("name"), "scenario name is required"))
		}
		if s.Workload.Environment == "" {
			errs = append(errs, d.errf(p.with("workload", "environment"), "environment is required"))
		}
		s.wl = inventory.Workload{Name: s.Workload.Name, Namespace: s.Workload.Namespace,
			Environment: s.Workload.Environment, Labels: s.Workload.Labels, Sidecar: s.Workload.Sidecar}
		if rq := s.Request; rq != nil {
			s.req = HTTPRequest{Method: rq.Method, Path: rq.Path}
			if s.req.Method == "" {
				s.req.Method = "GET"
			}
			for j, h := range rq.Headers {
				if err := s.req.AddHeader(h); err != nil {
					errs = append(errs, d.errf(p.with("request", "headers", j), "%v", err))
				}
			}
		} else if s.RequestRule != "" || s.Credential != "" {
			errs = append(errs, d.errf(p.with("request_rule"), "request_rule and credential need a request"))
		}
		if s.dest, err = ParseDestination(s.Dest); err != nil {
			errs = append(errs, d.errf(p.with("dest"), "%v", err))
		}
		if s.want, err = plan.ParseAction(s.Want); err != nil {
			errs = append(errs, d.errf(p.with("want"), "%v", err))
		}
		if s.Target != "" && s.want != plan.ActionRedirect {
			errs = append(errs, d.errf(p.with("target"), "target is only meaningful with want: redirect"))
		}
	}
	if len(sf.Scenarios) == 0 && len(errs) == 0 {
		errs = append(errs, &FieldError{File: file, Msg: "no scenarios (want a top-level scenarios: list)"})
	}
	return sf.Scenarios, errors.Join(errs...)
}

// ParseDestination parses a destination the way every surface does
// (plan.ParseDestination: a URL such as https://api.stripe.com/v1/charges,
// host[:port], an IPv4 address in any inet_aton spelling, IPv6 or
// [IPv6]:port), with the catalog's stricter label syntax for names.
func ParseDestination(s string) (plan.Destination, error) {
	d, err := plan.ParseDestination(s)
	if err != nil {
		return d, err
	}
	if d.Host != "" {
		if _, err := normalizeName(d.Host); err != nil {
			return plan.Destination{}, fmt.Errorf("bad destination %q: %w", s, err)
		}
	}
	return d, nil
}
