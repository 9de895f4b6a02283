package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The static inventory file:
//
//	default_environment: staging      # for unknown sources; "staging" when omitted
//	workloads:
//	  - name: checkout
//	    namespace: payments
//	    environment: staging
//	    labels: {app: checkout, team: pay}
//	    ips: [10.1.2.3, 10.1.3.0/24, "fd00::1"]
//	    node_ids: ["sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local"]
//
// Decoding is strict: unknown fields, duplicate keys and a second YAML
// document are errors. An entry of ips is an address (a single host) or a
// prefix without host bits.

type fileInventory struct {
	DefaultEnvironment posString      `yaml:"default_environment"`
	Workloads          []fileWorkload `yaml:"workloads"`
}

type fileWorkload struct {
	Name        posString         `yaml:"name"`
	Namespace   posString         `yaml:"namespace"`
	Environment posString         `yaml:"environment"`
	Labels      map[string]string `yaml:"labels"`
	IPs         []posString       `yaml:"ips"`
	NodeIDs     []posString       `yaml:"node_ids"`
	Sidecar     bool              `yaml:"sidecar"`
}

// posString is a YAML scalar with the line it was found on.
type posString struct {
	Value string
	Line  int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *posString) UnmarshalYAML(n *yaml.Node) error {
	p.Line = n.Line
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a string, got a %s", n.Line, kindName(n.Kind))}}
	}
	if n.Tag == "!!null" {
		p.Value = ""
		return nil
	}
	if n.Tag == "!!binary" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: binary values are not allowed", n.Line)}}
	}
	p.Value = n.Value
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	return "scalar"
}

// LoadFile reads and parses a static inventory file.
func LoadFile(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return Parse(path, b)
}

// Parse parses a static inventory document; name (a file name) prefixes
// every error message, with the line and field path of the problem. All
// problems are reported at once (errors.Join).
func Parse(name string, data []byte) (*Snapshot, error) {
	s, err := parse(name, data)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return s, nil
}

func parse(name string, data []byte) (*Snapshot, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f fileInventory
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w (write \"workloads: []\" for an empty inventory)", name, ErrNoDocument)
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, fmt.Errorf("%s:%d: %w", name, extra.Line, ErrExtraDocument)
	}

	var errs []error
	ws := make([]Workload, len(f.Workloads))
	// ipIdx[i][k] is the index in the file of the k-th valid address of
	// workload i, so that later errors name the right entry and line.
	ipIdx := make([][]int, len(f.Workloads))
	for i, fw := range f.Workloads {
		w := Workload{
			Name:        fw.Name.Value,
			Namespace:   fw.Namespace.Value,
			Environment: fw.Environment.Value,
			Labels:      fw.Labels,
			Sidecar:     fw.Sidecar,
		}
		for j, ip := range fw.IPs {
			p, err := parsePrefix(ip.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %s: %w: %w", name, ip.Line, indexLocator(i, "ips", j), ErrBadIP, err))
				continue
			}
			w.IPs = append(w.IPs, p)
			ipIdx[i] = append(ipIdx[i], j)
		}
		for _, id := range fw.NodeIDs {
			w.NodeIDs = append(w.NodeIDs, id.Value)
		}
		ws[i] = w
	}

	where := func(i int, field string, j int) string {
		if i < 0 {
			l := f.DefaultEnvironment.Line
			return fmt.Sprintf("%s:%d: %s", name, l, field)
		}
		fw := &f.Workloads[i]
		l := 0
		switch field {
		case "name":
			l = fw.Name.Line
		case "namespace":
			l = fw.Namespace.Line
		case "environment":
			l = fw.Environment.Line
		case "ips":
			if j >= 0 && j < len(ipIdx[i]) {
				j = ipIdx[i][j]
				l = fw.IPs[j].Line
			}
		case "node_ids":
			if j >= 0 && j < len(fw.NodeIDs) {
				l = fw.NodeIDs[j].Line
			}
		}
		if l == 0 {
			l = workloadLine(fw)
		}
		if l == 0 {
			return fmt.Sprintf("%s: %s", name, indexLocator(i, field, j))
		}
		return fmt.Sprintf("%s:%d: %s", name, l, indexLocator(i, field, j))
	}
	s, err := build(f.DefaultEnvironment.Value, ws, where)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// workloadLine is the first line known for a workload (its mapping has no
// position of its own after decoding).
func workloadLine(fw *fileWorkload) int {
	first := 0
	for _, l := range []int{fw.Name.Line, fw.Namespace.Line, fw.Environment.Line} {
		if l > 0 && (first == 0 || l < first) {
			first = l
		}
	}
	for _, list := range [][]posString{fw.IPs, fw.NodeIDs} {
		for _, p := range list {
			if first == 0 || p.Line < first {
				first = p.Line
			}
		}
	}
	return first
}

// yamlError rewrites the YAML library's errors to name the file and the
// inventory's own terms instead of Go type names.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, fmt.Errorf("%s: %w: %s", name, ErrSyntax, cleanYAMLMessage(msg)))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s: %w: %s", name, ErrSyntax, cleanYAMLMessage(strings.TrimPrefix(err.Error(), "yaml: ")))
}

func cleanYAMLMessage(msg string) string {
	r := strings.NewReplacer(
		"in type inventory.fileWorkload", "in workload (known: name, namespace, environment, labels, ips, node_ids)",
		"in type inventory.fileInventory", "at top level (known: default_environment, workloads)",
		"into inventory.fileInventory", "into the inventory (want a mapping with default_environment and workloads)",
		"into inventory.fileWorkload", "into a workload (want a mapping)",
		"into []inventory.fileWorkload", "into workloads (want a list)",
		"into []inventory.posString", "(want a list of strings)",
		"into map[string]string", "into labels (want a mapping of strings)",
	)
	return r.Replace(msg)
}

// parsePrefix accepts an address (a single host) or a prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty address")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return normalizePrefix(p)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Marshal renders the snapshot as a static inventory document that Parse
// reads back to an equal snapshot. Single-host prefixes are written as bare
// addresses.
func (s *Snapshot) Marshal() ([]byte, error) {
	type outWorkload struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace,omitempty"`
		Environment string            `yaml:"environment"`
		Labels      map[string]string `yaml:"labels,omitempty"`
		IPs         []string          `yaml:"ips,omitempty"`
		NodeIDs     []string          `yaml:"node_ids,omitempty"`
		Sidecar     bool              `yaml:"sidecar,omitempty"`
	}
	out := struct {
		DefaultEnvironment string        `yaml:"default_environment"`
		Workloads          []outWorkload `yaml:"workloads"`
	}{DefaultEnvironment: s.def.Environment, Workloads: make([]outWorkload, 0, len(s.workloads))}
	for _, w := range s.workloads {
		ow := outWorkload{
			Name:        w.Name,
			Namespace:   w.Namespace,
			Environment: w.Environment,
			Labels:      w.Labels,
			NodeIDs:     w.NodeIDs,
			Sidecar:     w.Sidecar,
		}
		for _, p := range w.IPs {
			if p.IsSingleIP() {
				ow.IPs = append(ow.IPs, p.Addr().String())
			} else {
				ow.IPs = append(ow.IPs, p.String())
			}
		}
		out.Workloads = append(out.Workloads, ow)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("inventory: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("inventory: marshal: %w", err)
	}
	return buf.Bytes(), nil
}
