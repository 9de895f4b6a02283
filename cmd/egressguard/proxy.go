package main

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/xds"
)

// adminClient reads a running guard's admin API, as istioctl reads istiod's
// debug endpoints: proxy-status and proxy-config are clients of it.
type adminClient struct {
	addr      string
	tokenFile string
	timeout   time.Duration
}

func (a *adminClient) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.addr, "admin", "127.0.0.1:9901", "the guard's admin `ADDRESS` (host:port, or an http(s):// URL)")
	f.StringVar(&a.tokenFile, "admin-token-file", "", "`FILE` holding a bearer token for the admin API, when it requires one")
	f.DurationVar(&a.timeout, "timeout", 10*time.Second, "give up on the admin API after this long")
}

// get fetches path from the admin API into out (JSON).
func (a *adminClient) get(ctx context.Context, path string, out any) error {
	base := a.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--admin %q: want host:port or a URL", a.addr)
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u.String(), "/")+path, nil)
	if err != nil {
		return err
	}
	if a.tokenFile != "" {
		tok, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is `egressguard serve` running? --admin sets the address)", u.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg += " (give a token with --admin-token-file)"
		}
		return fmt.Errorf("admin API %s: %s: %s", path, resp.Status, msg)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	return nil
}

func newProxyStatusCmd() *cobra.Command {
	a := &adminClient{}
	var output string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List the sidecars and proxyless clients connected to a running guard, with their config version, last ACK and NACKs",
		Long: `proxy-status asks a running guard's admin API (/api/sidecars) for every connected
xDS client: its node ID, workload and environment, the fingerprint of its class's
plan, the snapshot version served (one version covers listeners, routes, clusters
and endpoints: they are published together), open streams, the last ACK per
resource type (the digest of the versions accepted, and when), and the NACKs it
sent: how many, and the last one per resource type with Envoy's error text.`,
		Example: `  egressguard proxy-status
  egressguard proxy-status --admin 10.0.0.5:9901 --admin-token-file /var/run/secrets/egressguard/admin-token
  egressguard proxy-status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st struct {
				XDSEnabled bool           `json:"xds_enabled"`
				Nodes      []xds.NodeView `json:"nodes"`
			}
			if err := a.get(cmd.Context(), "/api/sidecars", &st); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				return writeIndentedJSON(out, st)
			case "table":
			default:
				return fmt.Errorf("-o %q: want table or json", output)
			}
			if !st.XDSEnabled {
				_, err := fmt.Fprintln(out, "the guard runs without its xDS server (xds.listen is empty): no sidecars")
				return err
			}
			return writeProxyStatus(out, st.Nodes, time.Now())
		},
	}
	a.flags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// writeProxyStatus prints one row per node: the last ACK and the last NACK
// per resource type, with the digest of the versions acknowledged or
// rejected and how long ago.
func writeProxyStatus(w io.Writer, nodes []xds.NodeView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tWORKLOAD\tENVIRONMENT\tPLAN\tVERSION\tSTREAMS\tNACKS\tLAST ACK\tLAST NACK")
	for _, n := range nodes {
		wl := n.Workload
		if n.Namespace != "" {
			wl += "." + n.Namespace
		}
		acks := perType(n.Protocol.LastACKs, func(t string, r xds.AckRecord) string {
			return fmt.Sprintf("%s v%s %s ago", t, r.Version, now.Sub(r.At).Round(time.Second))
		})
		nacks := perType(n.Protocol.LastNACKs, func(t string, r xds.NackRecord) string {
			return fmt.Sprintf("%s v%s %s ago: %s", t, r.Version, now.Sub(r.At).Round(time.Second), r.Detail)
		})
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", n.ID, n.Kind, orDash(wl), orDash(n.Environment),
			orDash(short(n.Plan, 12)), orDash(n.Protocol.Version), n.Streams, n.Protocol.NACKs, acks, nacks)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(tw, "(no xDS clients connected)")
	}
	return tw.Flush()
}

// perType formats one record per resource type, by type name, "-" for none.
func perType[R any](m map[string]*R, format func(typ string, r R) string) string {
	types := slices.Sorted(maps.Keys(m))
	if len(types) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(types))
	for _, t := range types {
		parts = append(parts, format(t, *m[t]))
	}
	return strings.Join(parts, "; ")
}

// proxyTypes are the resource types proxy-config shows, as --type names
// them and as the admin API's /debug/xds groups them.
var proxyTypes = []struct{ flag, key string }{
	{"listener", "listeners"}, {"route", "routes"}, {"cluster", "clusters"}, {"endpoint", "endpoints"}, {"secret", "secrets"},
}

func newProxyConfigCmd() *cobra.Command {
	a := &adminClient{}
	var typ, output string
	cmd := &cobra.Command{
		Use:   "proxy-config NODE",
		Short: "Show the Envoy configuration a running guard serves one node: listeners, routes, clusters",
		Long: `proxy-config asks a running guard's admin API (/debug/xds?node=NODE) for the
resources it serves one connected node (proxy-status lists the node IDs) and
prints a summary per resource, or, with -o json, the resources as Envoy
receives them (protojson). SDS secrets (the staging CA's leaves of intercepted
hosts) show by name and version only: the admin API never returns key material.`,
		Example: `  egressguard proxy-config sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local
  egressguard proxy-config sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local --type route
  egressguard proxy-config sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local --type cluster -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var keys []string
			for _, t := range proxyTypes {
				if typ == "" || typ == "all" || typ == t.flag {
					keys = append(keys, t.key)
				}
			}
			if len(keys) == 0 {
				return fmt.Errorf("--type %q: want listener, route, cluster, endpoint, secret or all", typ)
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			var dbg struct {
				Resources map[string][]json.RawMessage `json:"resources"`
			}
			if err := a.get(cmd.Context(), "/debug/xds?node="+url.QueryEscape(args[0]), &dbg); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				sel := map[string][]json.RawMessage{}
				for _, k := range keys {
					sel[k] = append([]json.RawMessage{}, dbg.Resources[k]...)
				}
				if len(keys) == 1 {
					return writeIndentedJSON(out, sel[keys[0]])
				}
				return writeIndentedJSON(out, sel)
			}
			return writeProxyConfig(out, keys, dbg.Resources)
		},
	}
	a.flags(cmd)
	cmd.Flags().StringVar(&typ, "type", "all", "resource `TYPE`: listener, route, cluster, endpoint, secret (name and version only) or all")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// resourceSummary is the part of an Envoy resource proxy-config's table
// shows; the fields exist in Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment (protojson names).
type resourceSummary struct {
	Name        string `json:"name"`
	ClusterName string `json:"clusterName"`
	Address     struct {
		Socket struct {
			Address string `json:"address"`
			Port    uint32 `json:"portValue"`
		} `json:"socketAddress"`
	} `json:"address"`
	FilterChains []json.RawMessage `json:"filterChains"`
	APIListener  json.RawMessage   `json:"apiListener"`
	VirtualHosts []struct {
		Domains []string `json:"domains"`
	} `json:"virtualHosts"`
	Type      string            `json:"type"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Version   string            `json:"version"` // secrets: the admin API shows no key material
}

func writeProxyConfig(w io.Writer, keys []string, res map[string][]json.RawMessage) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tNAME\tDETAIL")
	rows := 0
	for _, k := range keys {
		for _, raw := range res[k] {
			var s resourceSummary
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			name, detail := s.Name, ""
			switch k {
			case "listeners":
				if s.APIListener != nil {
					detail = "api listener (proxyless gRPC)"
				} else {
					detail = fmt.Sprintf("%s:%d, %d filter chains", s.Address.Socket.Address, s.Address.Socket.Port, len(s.FilterChains))
				}
			case "routes":
				var domains []string
				for _, vh := range s.VirtualHosts {
					domains = append(domains, vh.Domains...)
				}
				detail = fmt.Sprintf("%d virtual hosts: %s", len(s.VirtualHosts), short(strings.Join(domains, ","), 80))
			case "clusters":
				detail = orDash(s.Type)
			case "endpoints":
				name = s.ClusterName
				detail = fmt.Sprintf("%d localities", len(s.Endpoints))
			case "secrets":
				detail = "version " + s.Version
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.TrimSuffix(k, "s"), name, detail)
			rows++
		}
	}
	if rows == 0 {
		fmt.Fprintln(tw, "(no resources of these types served to this node)")
	}
	return tw.Flush()
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
