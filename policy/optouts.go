package policy

import (
	"fmt"
	"maps"
	pathpkg "path"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// HostNetworkOptOut admits host-network pods into a namespace the
// sidecar-injection webhook enforces. No sidecar, capture rule or
// NetworkPolicy governs such a pod, so each opt-out is reviewed like an
// exception: it names its namespace, optionally narrows to pod names and
// labels, and has an owner, a ticket and an expiry. A pod uses one by
// carrying the annotation egressguard.io/host-network-opt-out: <id>.
type HostNetworkOptOut struct {
	ID string `yaml:"id" json:"id"`
	// Namespace is the one namespace whose pods may use the opt-out.
	Namespace string `yaml:"namespace" json:"namespace"`
	// Pods is a glob (pathpkg.Match syntax: *, ?, [a-z]) over the pod's name,
	// or over its generateName when the API server has not named it yet
	// (a Deployment's or DaemonSet's pod at admission): "node-exporter-*"
	// matches both "node-exporter-x7k2p" and "node-exporter-". Empty: any.
	Pods string `yaml:"pods,omitempty" json:"pods,omitempty"`
	// Labels the pod must carry, each with this value. Empty: any.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Expires is the last day (UTC) on which the opt-out admits pods.
	Expires Date   `yaml:"expires" json:"expires"`
	Owner   string `yaml:"owner" json:"owner"`
	Ticket  string `yaml:"ticket" json:"ticket"`
	Reason  string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// OptOutPod is what an admission check knows of a pod.
type OptOutPod struct {
	Namespace    string
	Name         string // empty at admission for generated names
	GenerateName string
	Labels       map[string]string
}

// AdmitHostNetwork returns the opt-out named id when it admits pod at now,
// else an error saying why not (unknown id, another namespace, a pod name
// or label the opt-out does not cover, expired), written for the person
// whose pod was refused.
func (c *Catalog) AdmitHostNetwork(id string, pod OptOutPod, now time.Time) (*HostNetworkOptOut, error) {
	id = strings.TrimSpace(id)
	i := slices.IndexFunc(c.HostNetworkOptOuts, func(o HostNetworkOptOut) bool { return o.ID == id })
	if i < 0 {
		return nil, fmt.Errorf("no host_network_opt_outs entry %q in the catalog", id)
	}
	o := &c.HostNetworkOptOuts[i]
	if o.Namespace != pod.Namespace {
		return nil, fmt.Errorf("opt-out %q is for namespace %q, not %q", id, o.Namespace, pod.Namespace)
	}
	if o.Pods != "" {
		name := pod.Name
		if name == "" {
			name = pod.GenerateName
		}
		// The pattern was checked by validation: Match cannot fail.
		if ok, _ := pathpkg.Match(o.Pods, name); !ok {
			return nil, fmt.Errorf("opt-out %q covers pods %q, not %q", id, o.Pods, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		if v, ok := pod.Labels[k]; !ok || v != o.Labels[k] {
			return nil, fmt.Errorf("opt-out %q covers pods labelled %s=%s only", id, k, o.Labels[k])
		}
	}
	if o.Expires.ExpiredAt(now) {
		return nil, fmt.Errorf("opt-out %q expired %s (owner %s, ticket %s)", id, o.Expires, o.Owner, o.Ticket)
	}
	return o, nil
}

// validateHostNetworkOptOuts checks the host_network_opt_outs section.
func (c *Catalog) validateHostNetworkOptOuts(d *doc, add func(error)) {
	ids := map[string]int{}
	for i := range c.HostNetworkOptOuts {
		o := &c.HostNetworkOptOuts[i]
		p := path{"host_network_opt_outs", i}
		switch {
		case o.ID == "":
			add(d.errf(p.with("id"), "opt-out id is required (pods name it in their egressguard.io/host-network-opt-out annotation)"))
		case !exceptionIDRe.MatchString(o.ID):
			add(d.errf(p.with("id"), "bad opt-out id %q (letters, digits, '.', '_', '-')", o.ID))
		default:
			if j, dup := ids[o.ID]; dup {
				add(d.errf(p.with("id"), "duplicate opt-out id %q (first at line %d)", o.ID, d.line(path{"host_network_opt_outs", j, "id"})))
			} else {
				ids[o.ID] = i
			}
		}
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			add(d.errf(p.with("namespace"), "namespace %q: %s (an opt-out names exactly one namespace)", o.Namespace, strings.Join(errs, "; ")))
		}
		if _, err := pathpkg.Match(o.Pods, ""); err != nil {
			add(d.errf(p.with("pods"), "bad pod name glob %q: %v", o.Pods, err))
		}
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				add(d.errf(p.with("labels", k), "label key %q: %s", k, strings.Join(errs, "; ")))
			}
			if errs := validation.IsValidLabelValue(o.Labels[k]); len(errs) > 0 {
				add(d.errf(p.with("labels", k), "label value %q: %s", o.Labels[k], strings.Join(errs, "; ")))
			}
		}
		if strings.TrimSpace(o.Owner) == "" {
			add(d.errf(p.with("owner"), "owner is required (who answers for this opt-out)"))
		}
		if strings.TrimSpace(o.Ticket) == "" {
			add(d.errf(p.with("ticket"), "ticket is required (where it was approved)"))
		}
		switch {
		case o.Expires.Raw == "":
			add(d.errf(p.with("expires"), "expires is required (YYYY-MM-DD): opt-outs are time-boxed"))
		case !o.Expires.Valid():
			add(d.errf(p.with("expires"), "bad date %q (want YYYY-MM-DD)", o.Expires.Raw))
		}
	}
}

// mergeHostNetworkOptOuts appends from's opt-outs (from file) to c; seen maps
// each ID to the file that defined it. Expired opt-outs are kept: the
// webhook refuses them by date and lint and the admin page list them.
func (c *Catalog) mergeHostNetworkOptOuts(from *Catalog, file string, seen map[string]string) []error {
	var errs []error
	for _, o := range from.HostNetworkOptOuts {
		if prev, dup := seen[o.ID]; dup {
			errs = append(errs, &FieldError{File: file, Path: "host_network_opt_outs", Msg: fmt.Sprintf("opt-out id %q is already defined in %s", o.ID, prev)})
			continue
		}
		seen[o.ID] = file
		c.HostNetworkOptOuts = append(c.HostNetworkOptOuts, o)
	}
	return errs
}
