package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/inject/capture"
)

func newIptablesCmd(ro *rootOptions) *cobra.Command {
	return newIptablesCmdWith(ro, capture.ExecRunner{}, nil, func() (string, error) {
		return capture.HostNetwork(capture.SystemNamespace())
	})
}

// newIptablesCmdWith is newIptablesCmd with the command runner, the IPv6
// probe (nil reads /proc) and the host-namespace check replaceable (tests).
func newIptablesCmdWith(_ *rootOptions, runner capture.Runner, hasIPv6 func() (bool, error), hostNetwork func() (string, error)) *cobra.Command {
	o := capture.Options{ProxyPort: capture.DefaultProxyPort, ProxyUID: capture.DefaultProxyUID}
	var (
		apply     bool
		cleanup   bool
		allowHost bool
		ipv6      string
		backend   string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "iptables [--apply | --cleanup] [--proxy-port PORT] [--proxy-uid UID] [--exclude-port PORT]... [--exclude-cidr CIDR]...",
		Short: "Print or apply the rules that send a pod's outbound TCP to its egressguard sidecar",
		Long: `Print (default) or apply (--apply) the nat-table rules that capture a pod's
outbound TCP for the Envoy sidecar. The injected init container runs
  egressguard iptables --apply --proxy-port 15001 --proxy-uid 1337 ...
with NET_ADMIN and NET_RAW.

Rules, in the order iptables evaluates them: OUTPUT jumps to EGRESSGUARD_OUTPUT
for TCP; there, connections RETURN (are not captured) when they come from the
proxy UID (and --exclude-uid/--exclude-gid), leave through lo (127.0.0.0/8,
::1 and the pod's own addresses), go to an --exclude-port or an --exclude-cidr;
every other connection jumps to EGRESSGUARD_REDIRECT, which REDIRECTs it to
the sidecar's --proxy-port on the loopback address. UDP is not captured: DNS
goes to dnsguard and other UDP egress (QUIC) must be stopped by a NetworkPolicy.
An --exclude-port is exempt for every destination; prefer an --exclude-cidr
for a single server (dnsguard's IP, the xDS Service) where you can.

Without --apply the IPv4 document (for iptables-restore --noflush) is
printed, then the IPv6 one (for ip6tables-restore --noflush) unless
--ipv6=off. With --apply both are installed with iptables-restore --noflush:
only the EGRESSGUARD chains are flushed and refilled, other tables and chains
are kept, and the OUTPUT jump is added only if missing, so running it twice
(an init container restart) leaves the same ruleset. Each family is one
transaction, installed whole or not at all.

--apply refuses to run where the network namespace looks like a host's
rather than a pod's: on a node or a workstation the rules would send every
outbound TCP connection of the machine to --proxy-port. It looks, in order,
for the kernel's initial network namespace (its fixed inode, Linux 6.18+),
for a process on the host sharing PID 1's network namespace, and for
interfaces a pod does not have (a hardware or virtio NIC, a bridge). Pods
with a passed-through NIC (SR-IOV, VM-isolated runtimes) must add
--allow-host-network.

--cleanup removes what --apply installed and nothing else: the OUTPUT jump
and the two EGRESSGUARD chains, one iptables-restore transaction per family.

--ipv6=auto (default) installs the IPv6 rules when the network namespace has
IPv6 (/proc/net/if_inet6, disable_ipv6 not set) and fails if ip6tables-restore
is then missing, rather than letting IPv6 egress bypass the sidecar; --ipv6=on
always installs them; --ipv6=off never does (IPv6 egress is then not captured).`,
		Example: `  egressguard iptables --exclude-cidr 10.96.0.10/32
  egressguard iptables --ipv6=off | iptables-restore --noflush
  egressguard iptables --apply --proxy-port 15001 --proxy-uid 1337 --exclude-port 18000 --exclude-port 53
  egressguard iptables --cleanup`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, err := capture.ParseIPv6Mode(ipv6)
			if err != nil {
				return fmt.Errorf("--ipv6: %w", err)
			}
			be, err := capture.ParseBackend(backend)
			if err != nil {
				return fmt.Errorf("--backend: %w", err)
			}
			if apply && cleanup {
				return errors.New("--apply and --cleanup: choose one")
			}
			if apply && !allowHost {
				reason, err := hostNetwork()
				if err != nil {
					return fmt.Errorf("refusing to --apply: cannot tell whether this is a pod's network namespace (%w); pass --allow-host-network to apply anyway", err)
				}
				if reason != "" {
					return fmt.Errorf("refusing to --apply: this looks like a host's network namespace, not a pod's: %s. "+
						"The rules would send every outbound TCP connection of this machine to port %d. "+
						"Run without --apply to print them; pass --allow-host-network if you mean to capture this host's traffic "+
						"(egressguard iptables --cleanup removes them again)", reason, o.ProxyPort)
				}
			}
			out := cmd.OutOrStdout()
			if !apply && !cleanup {
				v4, v6, err := capture.Rules(o)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(out, v4)
				if err == nil && mode != capture.IPv6Off {
					_, err = fmt.Fprint(out, "\n"+v6)
				}
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			ao := capture.ApplyOptions{IPv6: mode, Backend: be, HasIPv6: hasIPv6}
			if cleanup {
				res, err := capture.Cleanup(ctx, runner, ao)
				return reportCleanup(out, res, err)
			}
			res, err := capture.Apply(ctx, o, runner, ao)
			if res != nil && res.IPv4 != "" {
				fmt.Fprintf(out, "installed the IPv4 capture rules:\n%s", res.IPv4)
			}
			if err != nil {
				return err
			}
			if res.IPv6 != "" {
				fmt.Fprintf(out, "installed the IPv6 capture rules:\n%s", res.IPv6)
			} else {
				fmt.Fprintf(out, "IPv6 capture rules not installed: %s\n", res.IPv6Skipped)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&apply, "apply", false, "install the rules with iptables-restore/ip6tables-restore instead of printing them (refused outside a pod's network namespace)")
	f.BoolVar(&cleanup, "cleanup", false, "remove the rules --apply installed (the OUTPUT jump and the EGRESSGUARD chains), nothing else")
	f.BoolVar(&allowHost, "allow-host-network", false, "let --apply capture a host's network namespace: every outbound TCP connection of the machine then goes to --proxy-port")
	f.Uint16Var(&o.ProxyPort, "proxy-port", o.ProxyPort, "the sidecar's outbound `PORT`: captured connections are redirected to it")
	f.Uint32Var(&o.ProxyUID, "proxy-uid", o.ProxyUID, "`UID` the sidecar runs as; its connections are not captured (not 0)")
	f.Var(newListFlag(&o.ExcludeUIDs, "uid", parseID), "exclude-uid", "further `UID`s whose connections are not captured (repeatable, comma-separated)")
	f.Var(newListFlag(&o.ExcludeGIDs, "gid", parseID), "exclude-gid", "`GID`s whose connections are not captured: an app running with this group bypasses the sidecar (repeatable)")
	f.Var(newListFlag(&o.ExcludePorts, "port", parsePort), "exclude-port", "destination `PORT`s never captured, to any destination (repeatable, comma-separated)")
	f.Var(newListFlag(&o.ExcludeCIDRs, "cidr", capture.ParsePrefix), "exclude-cidr", "destination `CIDR`s (or single IPs) never captured, IPv4 or IPv6 (repeatable, comma-separated)")
	f.StringVar(&ipv6, "ipv6", string(capture.IPv6Auto), "IPv6 rules: auto (when the namespace has IPv6; fail if ip6tables is missing), on, or off")
	f.StringVar(&backend, "backend", "default", "iptables variant: default (iptables-restore on PATH), legacy or nft")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up applying after this long (0: no limit)")
	return cmd
}

// reportCleanup says what --cleanup removed, family by family. After an
// error only what was removed before it is reported.
func reportCleanup(out io.Writer, res *capture.Result, err error) error {
	if res == nil {
		return err
	}
	say := func(family, doc string) {
		if doc == "" {
			fmt.Fprintf(out, "no %s capture rules to remove\n", family)
		} else {
			fmt.Fprintf(out, "removed the %s capture rules:\n%s", family, doc)
		}
	}
	switch {
	case err != nil:
		if res.IPv4 != "" {
			say("IPv4", res.IPv4)
		}
	case res.IPv6Skipped != "":
		say("IPv4", res.IPv4)
		fmt.Fprintf(out, "IPv6 not cleaned up: %s\n", res.IPv6Skipped)
	default:
		say("IPv4", res.IPv4)
		say("IPv6", res.IPv6)
	}
	return err
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag[T any] struct {
	vals  *[]T
	typ   string
	parse func(string) (T, error)
}

func newListFlag[T any](vals *[]T, typ string, parse func(string) (T, error)) *listFlag[T] {
	return &listFlag[T]{vals: vals, typ: typ, parse: parse}
}

func (l *listFlag[T]) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		v, err := l.parse(part)
		if err != nil {
			return err
		}
		*l.vals = append(*l.vals, v)
	}
	return nil
}

func (l *listFlag[T]) String() string {
	parts := make([]string, 0, len(*l.vals))
	for _, v := range *l.vals {
		parts = append(parts, fmt.Sprint(v))
	}
	return strings.Join(parts, ",")
}

func (l *listFlag[T]) Type() string { return l.typ }

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric ID", s)
	}
	return uint32(n), nil
}
