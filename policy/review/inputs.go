package review

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/egressguard/egressguard/internal/parallel"
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
// are returned once. name is used in errors (file:line). Lines are decoded
// in parallel.
func ReadDecisions(name string, r io.Reader) ([]Recorded, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	lines := bytes.Split(data, []byte{'\n'})
	type slot struct {
		in  decisionlog.Input
		err error
		ok  bool
	}
	slots := make([]slot, len(lines))
	ranges := parallel.Ranges(len(lines), 0)
	_ = parallel.ForEach(len(ranges), 0, func(r int) error {
		for i := ranges[r][0]; i < ranges[r][1]; i++ {
			b := bytes.TrimSpace(lines[i])
			if len(b) == 0 {
				continue
			}
			var rec recordInput
			if err := json.Unmarshal(b, &rec); err != nil {
				slots[i].err = fmt.Errorf("%s:%d: %w", name, i+1, err)
				continue
			}
			if rec.Input.Destination.Host == "" && !rec.Input.Destination.IP.IsValid() {
				slots[i].err = fmt.Errorf("%s:%d: input.destination: neither host nor ip", name, i+1)
				continue
			}
			slots[i].in, slots[i].ok = rec.Input, true
		}
		return nil
	})
	seen := make(map[string]struct{})
	var out []Recorded
	var errs []error
	for i := range slots {
		sl := &slots[i]
		if sl.err != nil {
			if len(errs) == 10 {
				errs = append(errs, fmt.Errorf("%s: more errors not shown", name))
			}
			if len(errs) < 10 {
				errs = append(errs, sl.err)
			}
			continue
		}
		if !sl.ok {
			continue
		}
		in := sl.in
		k := recordKey(in)
		if _, ok := seen[k]; ok {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, Recorded{
			Workload:    inventory.Workload{Name: in.Workload.Name, Namespace: in.Workload.Namespace, Environment: in.Workload.Environment, Labels: in.Workload.Labels},
			Destination: plan.Destination{Host: in.Destination.Host, Port: in.Destination.Port, IP: in.Destination.IP.Unmap(), Protocol: in.Destination.Protocol},
		})
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

// rawCatalogs parses the layout's catalog files one by one, so that
// Diff sees every exception, expired ones included (Engine.Catalog drops
// those).
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
