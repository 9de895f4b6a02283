package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inject/capture"
)

// iptablesRunner records the commands --apply runs; iptables-save shows an
// empty nat table.
type iptablesRunner struct {
	calls []string
	fail  map[string]error
	saved map[string]string // what each *-save command prints
}

func (r *iptablesRunner) Run(_ context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	r.calls = append(r.calls, name+" "+strings.Join(args, " ")+"\n"+string(stdin))
	return []byte(r.saved[name]), r.fail[name]
}

// runIptables runs the command in what the host check takes for a pod.
func runIptables(t *testing.T, r capture.Runner, hasIPv6 bool, args ...string) (string, error) {
	t.Helper()
	return runIptablesIn(t, r, hasIPv6, func() (string, error) { return "", nil }, args...)
}

func runIptablesIn(t *testing.T, r capture.Runner, hasIPv6 bool, hostNetwork func() (string, error), args ...string) (string, error) {
	t.Helper()
	cmd := newIptablesCmdWith(&rootOptions{}, r, func() (bool, error) { return hasIPv6, nil }, hostNetwork)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true // as under the root command
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRules(t *testing.T, o capture.Options) (string, string) {
	t.Helper()
	v4, v6, err := capture.Rules(o)
	require.NoError(t, err)
	return v4, v6
}

func TestIptablesCmdPrints(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	cases := []struct {
		name string
		args []string
		want capture.Options
		v6   bool
	}{
		{"defaults", nil, capture.Options{ProxyPort: 15001, ProxyUID: 1337}, true},
		{"the webhook's init container", webhookCaptureArgs(t),
			capture.Options{ProxyPort: 15001, ProxyUID: 1337, ExcludeCIDRs: []netip.Prefix{p("10.96.0.53/32"), p("10.0.0.0/8")}}, true},
		{"comma lists and single IPs", []string{"--proxy-port=16001", "--proxy-uid=101", "--exclude-port=53,18000", "--exclude-cidr", "10.96.0.10, fd00::/8", "--exclude-uid", "2000,2001", "--exclude-gid", "3000"},
			capture.Options{ProxyPort: 16001, ProxyUID: 101, ExcludeUIDs: []uint32{2000, 2001}, ExcludeGIDs: []uint32{3000}, ExcludePorts: []uint16{53, 18000}, ExcludeCIDRs: []netip.Prefix{p("10.96.0.10/32"), p("fd00::/8")}}, true},
		{"IPv4 only", []string{"--ipv6=off"}, capture.Options{ProxyPort: 15001, ProxyUID: 1337}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &iptablesRunner{}
			out, err := runIptables(t, r, true, tc.args...)
			require.NoError(t, err)
			v4, v6 := mustRules(t, tc.want)
			want := v4
			if tc.v6 {
				want += "\n" + v6
			}
			assert.Equal(t, want, out)
			assert.Empty(t, r.calls, "printing runs nothing")
		})
	}
}

func TestIptablesCmdApply(t *testing.T) {
	o := capture.Options{ProxyPort: 15001, ProxyUID: 1337, ExcludePorts: []uint16{53}}
	v4, v6 := mustRules(t, o)

	t.Run("dual stack", func(t *testing.T) {
		r := &iptablesRunner{}
		out, err := runIptables(t, r, true, "--apply", "--exclude-port", "53")
		require.NoError(t, err)
		assert.Equal(t, []string{
			"iptables-save -t nat\n",
			"iptables-restore --noflush\n" + v4,
			"ip6tables-save -t nat\n",
			"ip6tables-restore --noflush\n" + v6,
		}, r.calls)
		assert.Equal(t, "installed the IPv4 capture rules:\n"+v4+"installed the IPv6 capture rules:\n"+v6, out)
	})
	t.Run("no IPv6 in the namespace", func(t *testing.T) {
		r := &iptablesRunner{}
		out, err := runIptables(t, r, false, "--apply", "--exclude-port", "53")
		require.NoError(t, err)
		assert.Len(t, r.calls, 2)
		assert.Contains(t, out, "IPv6 capture rules not installed: this network namespace has no IPv6\n")
	})
	t.Run("legacy backend, IPv6 forced", func(t *testing.T) {
		r := &iptablesRunner{}
		_, err := runIptables(t, r, false, "--apply", "--backend=legacy", "--ipv6=on")
		require.NoError(t, err)
		require.Len(t, r.calls, 4)
		assert.True(t, strings.HasPrefix(r.calls[1], "iptables-legacy-restore --noflush\n"))
		assert.True(t, strings.HasPrefix(r.calls[3], "ip6tables-legacy-restore --noflush\n"))
	})
	t.Run("iptables-restore fails", func(t *testing.T) {
		r := &iptablesRunner{fail: map[string]error{"iptables-restore": &capture.CommandError{
			Name: "iptables-restore", Args: []string{"--noflush"}, Stderr: "iptables-restore v1.8.9 (nf_tables): line 7 failed\n", Err: errors.New("exit status 1"),
		}}}
		out, err := runIptables(t, r, true, "--apply")
		require.Error(t, err)
		assert.Equal(t, "capture: install the IPv4 rules: iptables-restore --noflush: exit status 1: iptables-restore v1.8.9 (nf_tables): line 7 failed", err.Error())
		assert.Empty(t, out)
		assert.Len(t, r.calls, 2, "IPv6 is not attempted after IPv4 failed")
	})
}

// TestIptablesCmdRefusesHost: --apply where the namespace looks like a
// host's runs nothing unless --allow-host-network says so; printing and
// --cleanup are never refused.
func TestIptablesCmdRefusesHost(t *testing.T) {
	host := func() (string, error) { return "interface ens5 is a hardware or paravirtual NIC", nil }
	r := &iptablesRunner{}
	_, err := runIptablesIn(t, r, true, host, "--apply")
	require.Error(t, err)
	assert.Equal(t, "refusing to --apply: this looks like a host's network namespace, not a pod's: interface ens5 is a hardware or paravirtual NIC. "+
		"The rules would send every outbound TCP connection of this machine to port 15001. Run without --apply to print them; "+
		"pass --allow-host-network if you mean to capture this host's traffic (egressguard iptables --cleanup removes them again)", err.Error())
	assert.Empty(t, r.calls)

	_, err = runIptablesIn(t, r, true, func() (string, error) { return "", errors.New("netlink: permission denied") }, "--apply")
	require.ErrorContains(t, err, "cannot tell whether this is a pod's network namespace (netlink: permission denied); pass --allow-host-network")
	assert.Empty(t, r.calls)

	_, err = runIptablesIn(t, r, true, host, "--apply", "--allow-host-network")
	require.NoError(t, err)
	assert.Len(t, r.calls, 4, "forced: applied")

	r = &iptablesRunner{}
	out, err := runIptablesIn(t, r, true, host)
	require.NoError(t, err)
	assert.Contains(t, out, "*nat")
	assert.Empty(t, r.calls, "the default is a dry run")

	_, err = runIptablesIn(t, r, true, host, "--cleanup")
	require.NoError(t, err)
	assert.Len(t, r.calls, 2, "cleanup reads both families' tables on a host too")

	_, err = runIptables(t, r, true, "--apply", "--cleanup")
	require.EqualError(t, err, "--apply and --cleanup: choose one")
}

// TestIptablesCmdCleanup: --cleanup feeds iptables-restore the document
// that removes the hook and the chains it found, per family.
func TestIptablesCmdCleanup(t *testing.T) {
	applied := "*nat\n:OUTPUT ACCEPT [0:0]\n:EGRESSGUARD_OUTPUT - [0:0]\n:EGRESSGUARD_REDIRECT - [0:0]\n-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n-A EGRESSGUARD_OUTPUT -j EGRESSGUARD_REDIRECT\nCOMMIT\n"
	undo := "# egressguard: remove the traffic capture rules\n*nat\n:EGRESSGUARD_OUTPUT - [0:0]\n:EGRESSGUARD_REDIRECT - [0:0]\n-D OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n-X EGRESSGUARD_OUTPUT\n-X EGRESSGUARD_REDIRECT\nCOMMIT\n"
	r := &iptablesRunner{saved: map[string]string{"iptables-save": applied, "ip6tables-save": "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"}}
	out, err := runIptables(t, r, true, "--cleanup")
	require.NoError(t, err)
	assert.Equal(t, []string{"iptables-save -t nat\n", "iptables-restore --noflush\n" + undo, "ip6tables-save -t nat\n"}, r.calls)
	assert.Equal(t, "removed the IPv4 capture rules:\n"+undo+"no IPv6 capture rules to remove\n", out)

	r = &iptablesRunner{saved: map[string]string{"iptables-save": applied}, fail: map[string]error{"ip6tables-save": &capture.CommandError{Name: "ip6tables-save", Err: exec.ErrNotFound}}}
	out, err = runIptables(t, r, true, "--cleanup")
	require.NoError(t, err)
	assert.Equal(t, "removed the IPv4 capture rules:\n"+undo+"IPv6 not cleaned up: ip6tables is not installed, so no IPv6 rules were\n", out)

	r = &iptablesRunner{saved: map[string]string{"iptables-save": applied}, fail: map[string]error{"iptables-restore": errors.New("exit status 1")}}
	out, err = runIptables(t, r, true, "--cleanup")
	require.ErrorContains(t, err, "capture: remove the IPv4 rules: exit status 1")
	assert.Empty(t, out)
}

func TestIptablesCmdRejectsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--exclude-cidr", "10.1.2.3/8"}, `invalid argument "10.1.2.3/8" for "--exclude-cidr" flag: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8`},
		{[]string{"--exclude-cidr", "0.0.0.0/0"}, "would exclude every IPv4 destination"},
		{[]string{"--exclude-cidr", "db.prod"}, `"db.prod" is not an IP address or CIDR`},
		{[]string{"--exclude-port", "0"}, `"0" is not a port (1-65535)`},
		{[]string{"--exclude-port", "53,70000"}, `"70000" is not a port (1-65535)`},
		{[]string{"--exclude-uid", "-1"}, `"-1" is not a numeric ID`},
		{[]string{"--proxy-port", "70000"}, `invalid argument "70000" for "--proxy-port"`},
		{[]string{"--proxy-uid", "0"}, "proxy_uid: must not be 0 (root)"},
		{[]string{"--exclude-gid", "0"}, "exclude_gids[0]: must not be 0"},
		{[]string{"--ipv6", "maybe"}, `--ipv6: capture: ipv6 mode "maybe": want auto, on or off`},
		{[]string{"--backend", "iptables"}, `--backend: capture: iptables backend "iptables": want default, legacy or nft`},
		{[]string{"extra"}, `unknown command "extra"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for _, apply := range []bool{false, true} {
				args := tc.args
				if apply {
					args = append([]string{"--apply"}, args...)
				}
				r := &iptablesRunner{}
				_, err := runIptables(t, r, true, args...)
				require.Error(t, err)
				assert.ErrorContains(t, err, tc.want)
				assert.Empty(t, r.calls, "nothing is applied from bad flags")
			}
		})
	}
}

func TestIptablesCmdHelp(t *testing.T) {
	out, err := runIptables(t, &iptablesRunner{}, true, "--help")
	require.NoError(t, err)
	for _, flag := range []string{"--apply", "--cleanup", "--allow-host-network", "--proxy-port PORT", "--proxy-uid UID", "--exclude-uid UID", "--exclude-gid GID", "--exclude-port PORT", "--exclude-cidr CIDR", "--ipv6", "--backend", "--timeout"} {
		assert.Contains(t, out, flag)
	}
	assert.Contains(t, out, "UDP is not captured")
}

// webhookCaptureArgs are the flags the injection webhook gives this command
// in the init container (after "iptables --apply"), so the two cannot drift.
func webhookCaptureArgs(t *testing.T) []string {
	t.Helper()
	cfg := inject.Defaults()
	cfg.InitImage = inject.DefaultInitImageRepository + ":test"
	cfg.DNSServer = "10.96.0.53"
	cfg.ExcludeCIDRs = []string{"10.0.0.0/8"}
	inj, err := inject.NewInjector(cfg)
	require.NoError(t, err)
	args := inj.CaptureArgs()
	require.Equal(t, []string{"iptables", "--apply"}, args[:2])
	return args[2:]
}
