package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

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

	// Filled in by ParseScenarios.
	File string             `yaml:"-"`
	Line int                `yaml:"-"`
	dest plan.Destination   `yaml:"-"`
	want plan.Action        `yaml:"-"`
	wl   inventory.Workload `yaml:"-"`
}

// ScenarioWorkload is the caller of a scenario.
type ScenarioWorkload struct {
	Environment string            `yaml:"environment"`
	Name        string            `yaml:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
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
			Environment: s.Workload.Environment, Labels: s.Workload.Labels}
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

// ParseDestination parses host[:port], IPv4[:port], IPv6 or [IPv6]:port.
func ParseDestination(s string) (plan.Destination, error) {
	var d plan.Destination
	if s == "" {
		return d, errors.New("empty destination")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		d.IP = a.Unmap()
		return d, nil
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return d, fmt.Errorf("bad port %q in %q", port, s)
		}
		host, d.Port = h, uint16(n)
	} else if strings.Contains(s, ":") && !strings.Contains(s, "::") && strings.Count(s, ":") == 1 {
		return d, fmt.Errorf("bad destination %q: %w", s, err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		d.IP = a.Unmap()
		return d, nil
	}
	if strings.Contains(host, "*") {
		return d, fmt.Errorf("bad destination %q: a destination is a name, not a pattern", s)
	}
	n, err := normalizeName(host)
	if err != nil {
		return d, fmt.Errorf("bad destination %q: %w", s, err)
	}
	d.Host = n
	return d, nil
}
