// Package inventory answers "who is asking": it maps a source IP (DNS) or an
// Envoy node ID (xds) to a Workload.
package inventory

import "net/netip"

// Workload is one caller: what the policy sees as input.workload.
type Workload struct {
	Name        string            `json:"name" yaml:"name"`
	Namespace   string            `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Environment string            `json:"environment" yaml:"environment"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// IPs are the source addresses or prefixes the workload calls from.
	IPs []netip.Prefix `json:"ips,omitempty" yaml:"ips,omitempty"`
	// NodeIDs are the Envoy node IDs of the workload's sidecars.
	NodeIDs []string `json:"node_ids,omitempty" yaml:"node_ids,omitempty"`
	// Sidecar is set when every pod of the workload runs the egressguard
	// sidecar, which can decide each HTTP request to an intercepted host.
	// It is part of the workload class (input.workload.sidecar).
	Sidecar bool `json:"sidecar,omitempty" yaml:"sidecar,omitempty"`
}
