package review

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// Recorded is one recorded request: who asked for what. The recorded
// result is not needed: both versions are decided afresh.
type Recorded struct {
	Workload    inventory.Workload
	Destination plan.Destination
}

// recordInput is the part of a decisionlog.Record a diff reads.
type recordInput struct {
	Input decisionlog.Input `json:"input"`
}

// ReadDecisions reads decision records (decisionlog.Record, one JSON object
// per line; blank lines are skipped). Requests that occur more than once
// are returned once. name is used in errors (file:line).
func ReadDecisions(name string, r io.Reader) ([]Recorded, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	seen := make(map[string]struct{})
	var out []Recorded
	var errs []error
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var rec recordInput
		if err := json.Unmarshal(b, &rec); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
			if len(errs) >= 10 {
				errs = append(errs, fmt.Errorf("%s: too many errors", name))
				break
			}
			continue
		}
		in := rec.Input
		if in.Destination.Host == "" && !in.Destination.IP.IsValid() {
			errs = append(errs, fmt.Errorf("%s:%d: input.destination: neither host nor ip", name, line))
			continue
		}
		k := recordKey(in)
		if _, ok := seen[k]; ok {
			continue
		}
		seen[k] = struct{}{}
		d := plan.Destination{Host: in.Destination.Host, Port: in.Destination.Port, IP: in.Destination.IP.Unmap(), Protocol: in.Destination.Protocol}
		out = append(out, Recorded{
			Workload:    inventory.Workload{Name: in.Workload.Name, Namespace: in.Workload.Namespace, Environment: in.Workload.Environment, Labels: in.Workload.Labels},
			Destination: d,
		})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return out, errors.Join(errs...)
}

// ReadDecisionFile is ReadDecisions on a file.
func ReadDecisionFile(path string) ([]Recorded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("review: decisions: %w", err)
	}
	defer f.Close()
	recs, err := ReadDecisions(path, f)
	if err != nil {
		return nil, fmt.Errorf("review: decisions: %w", err)
	}
	return recs, nil
}

func recordKey(in decisionlog.Input) string {
	var b strings.Builder
	writeWorkloadKey(&b, in.Workload.Environment, in.Workload.Name, in.Workload.Namespace, in.Workload.Labels)
	fmt.Fprintf(&b, "|%s|%d|%s|%s", in.Destination.Host, in.Destination.Port, in.Destination.IP, in.Destination.Protocol)
	return b.String()
}

func writeWorkloadKey(b *strings.Builder, env, name, ns string, labels map[string]string) {
	b.WriteString(env)
	b.WriteByte(0)
	b.WriteString(ns)
	b.WriteByte(0)
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
}

func workloadKey(w *inventory.Workload) string {
	var b strings.Builder
	writeWorkloadKey(&b, w.Environment, w.Name, w.Namespace, w.Labels)
	return b.String()
}

// rawExceptions parses the layout's catalog files one by one and returns
// every exception, expired ones included (Engine.Catalog drops those).
func rawCatalogs(l Layout) ([]*policy.Catalog, error) {
	files, err := policy.LoadCatalogFiles(l.CatalogFiles...)
	if err != nil {
		return nil, err
	}
	var out []*policy.Catalog
	var errs []error
	for _, f := range files {
		c, err := policy.ParseCatalog(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// FormatDestination renders host:port, ip:port or host:port (ip).
func FormatDestination(d plan.Destination) string {
	var s string
	switch {
	case d.Host != "":
		s = d.Host
		if d.Port != 0 {
			s = fmt.Sprintf("%s:%d", d.Host, d.Port)
		}
		if d.IP.IsValid() {
			s += " (" + d.IP.String() + ")"
		}
	case d.IP.IsValid():
		s = d.IP.String()
		if d.Port != 0 {
			s = netip.AddrPortFrom(d.IP, d.Port).String()
		}
	}
	if d.Protocol != "" {
		s += " " + d.Protocol
	}
	return s
}
