package capture

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite inject/capture/testdata/golden and delete stale files")

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePrefix(s)
		require.NoError(t, err, s)
		out = append(out, p)
	}
	return out
}

// webhookOptions are the options the injected init container passes.
func webhookOptions(t testing.TB) Options {
	return Options{
		ProxyPort:    15001,
		ProxyUID:     1337,
		ExcludePorts: []uint16{18000, 53},
		ExcludeCIDRs: prefixes(t, "10.0.0.0/8"),
	}
}

func TestIptablesRulesGolden(t *testing.T) {
	cases := []struct {
		name string
		opts Options
	}{
		{"minimal", Options{ProxyPort: 15001, ProxyUID: 1337}},
		{"webhook", webhookOptions(t)},
		{"dual-stack", Options{
			ProxyPort: 15001,
			ProxyUID:  1337,
			// Unsorted with duplicates: the output is sorted and de-duplicated.
			ExcludeUIDs:  []uint32{2000, 1337, 1500, 2000},
			ExcludeGIDs:  []uint32{1337},
			ExcludePorts: []uint16{18000, 53, 18000, 8443},
			ExcludeCIDRs: prefixes(t, "fd00::/8", "192.168.0.0/16", "10.0.0.0/8", "169.254.169.254", "2001:db8:1::/48", "10.0.0.0/8"),
		}},
		{"custom-port", Options{ProxyPort: 16001, ProxyUID: 101, ExcludeCIDRs: prefixes(t, "2001:db8::/32")}},
	}
	dir := filepath.Join("testdata", "golden")
	produced := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6, err := Rules(tc.opts)
			require.NoError(t, err)
			for fam, got := range map[string]string{"v4": v4, "v6": v6} {
				path := filepath.Join(dir, tc.name+"."+fam+".rules")
				produced[path] = true
				if *update {
					require.NoError(t, os.MkdirAll(dir, 0o755))
					require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
					continue
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "missing golden file; run go test ./inject/capture -update")
				assert.Equal(t, string(want), got, "%s differs; run go test ./inject/capture -update and review the diff", path)
			}
			// Same options, same bytes.
			again4, again6, err := Rules(tc.opts)
			require.NoError(t, err)
			assert.Equal(t, v4, again4)
			assert.Equal(t, v6, again6)
		})
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	for _, path := range files {
		if produced[path] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(path))
			continue
		}
		t.Errorf("stale golden file %s (no case produces it); run go test ./inject/capture -update", path)
	}
}

func TestIptablesRulesDoNotModifyInput(t *testing.T) {
	o := Options{ProxyPort: 15001, ProxyUID: 1337, ExcludePorts: []uint16{443, 53}, ExcludeCIDRs: prefixes(t, "192.168.0.0/16", "10.0.0.0/8")}
	_, _, err := Rules(o)
	require.NoError(t, err)
	assert.Equal(t, []uint16{443, 53}, o.ExcludePorts)
	assert.Equal(t, prefixes(t, "192.168.0.0/16", "10.0.0.0/8"), o.ExcludeCIDRs)
}

func TestIptablesRulesFamilies(t *testing.T) {
	o := webhookOptions(t)
	o.ExcludeCIDRs = prefixes(t, "10.0.0.0/8", "fd00::/8")
	v4, v6, err := Rules(o)
	require.NoError(t, err)
	assert.Contains(t, v4, "-A EGRESSGUARD_OUTPUT -d 10.0.0.0/8 -j RETURN\n")
	assert.NotContains(t, v4, "fd00::/8")
	assert.Contains(t, v4, "-d 127.0.0.0/8 -j RETURN")
	assert.Contains(t, v6, "-A EGRESSGUARD_OUTPUT -d fd00::/8 -j RETURN\n")
	assert.NotContains(t, v6, "10.0.0.0/8")
	assert.Contains(t, v6, "-d ::1/128 -j RETURN")
	for _, doc := range []string{v4, v6} {
		// The redirect is the last rule of the exemption chain.
		lines := strings.Split(strings.TrimSpace(doc), "\n")
		require.GreaterOrEqual(t, len(lines), 3)
		assert.Equal(t, "-A EGRESSGUARD_OUTPUT -j EGRESSGUARD_REDIRECT", lines[len(lines)-3])
		assert.Equal(t, "-A EGRESSGUARD_REDIRECT -p tcp -j REDIRECT --to-ports 15001", lines[len(lines)-2])
		assert.Equal(t, "COMMIT", lines[len(lines)-1])
		assert.Equal(t, 1, strings.Count(doc, hookRule))
	}
}

func TestIptablesRulesRejectBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want []string
	}{
		{"zero value", Options{}, []string{"proxy_port: required", "proxy_uid: must not be 0"}},
		{"root proxy", Options{ProxyPort: 15001}, []string{"proxy_uid: must not be 0 (root)"}},
		{"root exempt", Options{ProxyPort: 15001, ProxyUID: 1337, ExcludeUIDs: []uint32{7, 0}, ExcludeGIDs: []uint32{0}}, []string{"exclude_uids[1]: must not be 0", "exclude_gids[0]: must not be 0"}},
		{"port zero", Options{ProxyPort: 15001, ProxyUID: 1337, ExcludePorts: []uint16{53, 0}}, []string{"exclude_ports[1]: port 0"}},
		{"bad cidrs", Options{ProxyPort: 15001, ProxyUID: 1337, ExcludeCIDRs: []netip.Prefix{
			{},
			netip.MustParsePrefix("10.1.2.3/8"),
			netip.MustParsePrefix("0.0.0.0/0"),
			netip.MustParsePrefix("::/0"),
			netip.MustParsePrefix("::ffff:10.0.0.0/104"),
		}}, []string{
			"exclude_cidrs[0]: invalid prefix",
			"exclude_cidrs[1]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8 (or 10.1.2.3/32",
			"exclude_cidrs[2]: 0.0.0.0/0 would exclude every IPv4 destination",
			"exclude_cidrs[3]: ::/0 would exclude every IPv6 destination",
			"exclude_cidrs[4]: ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 prefix",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6, err := Rules(tc.opts)
			require.Error(t, err)
			assert.Empty(t, v4)
			assert.Empty(t, v6)
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w)
			}
			assert.Len(t, strings.Split(err.Error(), "\n"), len(tc.want), "one line per problem: %v", err)
			_, err = Apply(context.Background(), tc.opts, &fakeRunner{}, ApplyOptions{})
			require.Error(t, err, "Apply validates too")
		})
	}
}

func TestIptablesParsePrefix(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: " 192.168.1.0/24 ", want: "192.168.1.0/24"},
		{in: "10.1.2.3", want: "10.1.2.3/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "10.1.2.3/8", err: "host bits set; did you mean 10.0.0.0/8"},
		{in: "0.0.0.0/0", err: "would exclude every IPv4 destination"},
		{in: "::ffff:10.1.2.3", err: "IPv4-mapped"},
		{in: "fe80::1%eth0", err: "zoned"},
		{in: "fe80::/10%eth0", err: "is not a CIDR"},
		{in: "10.0.0.0/33", err: "is not a CIDR"},
		{in: "example.com", err: "is not an IP address or CIDR"},
		{in: "", err: "is not an IP address or CIDR"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePrefix(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.String())
		})
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3", "2001:db8::/32", "::1", "::ffff:1.2.3.4/128", "0.0.0.0/0", "1.2.3.4/33", "fe80::1%lo", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		// Fixpoint: the canonical form parses back to the same prefix.
		again, err := ParsePrefix(p.String())
		require.NoError(t, err)
		require.Equal(t, p, again)
		// Whatever parses is a valid exclusion and lands in its family's rules only.
		v4, v6, err := Rules(Options{ProxyPort: 15001, ProxyUID: 1337, ExcludeCIDRs: []netip.Prefix{p}})
		require.NoError(t, err)
		rule := fmt.Sprintf("-A %s -d %s -j RETURN\n", OutputChain, p)
		mine, other := v4, v6
		if p.Addr().Is6() {
			mine, other = v6, v4
		}
		require.Contains(t, mine, rule)
		require.NotContains(t, other, rule)
	})
}

// fakeRunner is iptables as seen through Runner: a map of canned save
// output per command and a record of every call.
type fakeRunner struct {
	save  map[string]string // iptables-save output per command name
	fail  map[string]error  // error per command name
	calls []call
}

type call struct {
	name  string
	args  []string
	stdin string
}

func (r *fakeRunner) Run(_ context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	r.calls = append(r.calls, call{name, args, string(stdin)})
	if err := r.fail[name]; err != nil {
		return nil, err
	}
	return []byte(r.save[name]), nil
}

const savedWithHook = `# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:EGRESSGUARD_OUTPUT - [0:0]
-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT
COMMIT
`

func TestIptablesApply(t *testing.T) {
	o := webhookOptions(t)
	v4, v6, err := Rules(o)
	require.NoError(t, err)
	noV6 := func() (bool, error) { return false, nil }
	hasV6 := func() (bool, error) { return true, nil }

	t.Run("fresh namespace, dual stack", func(t *testing.T) {
		r := &fakeRunner{}
		res, err := Apply(context.Background(), o, r, ApplyOptions{HasIPv6: hasV6})
		require.NoError(t, err)
		assert.Equal(t, []call{
			{"iptables-save", []string{"-t", "nat"}, ""},
			{"iptables-restore", []string{"--noflush"}, v4},
			{"ip6tables-save", []string{"-t", "nat"}, ""},
			{"ip6tables-restore", []string{"--noflush"}, v6},
		}, r.calls)
		assert.Equal(t, v4, res.IPv4)
		assert.Equal(t, v6, res.IPv6)
		assert.Empty(t, res.IPv6Skipped)
	})
	t.Run("second apply keeps one hook", func(t *testing.T) {
		r := &fakeRunner{save: map[string]string{"iptables-save": savedWithHook, "ip6tables-save": savedWithHook}}
		res, err := Apply(context.Background(), o, r, ApplyOptions{IPv6: IPv6On})
		require.NoError(t, err)
		require.Len(t, r.calls, 4)
		assert.Equal(t, strings.Replace(v4, hookRule+"\n", "", 1), r.calls[1].stdin)
		assert.Equal(t, strings.Replace(v6, hookRule+"\n", "", 1), r.calls[3].stdin)
		assert.NotContains(t, res.IPv4, hookRule)
	})
	t.Run("hook only in another table does not count", func(t *testing.T) {
		r := &fakeRunner{save: map[string]string{"iptables-save": "*filter\n-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\nCOMMIT\n"}}
		_, err := Apply(context.Background(), o, r, ApplyOptions{IPv6: IPv6Off})
		require.NoError(t, err)
		assert.Equal(t, v4, r.calls[1].stdin)
	})
	t.Run("auto without IPv6 skips it", func(t *testing.T) {
		r := &fakeRunner{}
		res, err := Apply(context.Background(), o, r, ApplyOptions{HasIPv6: noV6})
		require.NoError(t, err)
		assert.Len(t, r.calls, 2)
		assert.Empty(t, res.IPv6)
		assert.Equal(t, "this network namespace has no IPv6", res.IPv6Skipped)
	})
	t.Run("off skips IPv6", func(t *testing.T) {
		r := &fakeRunner{}
		res, err := Apply(context.Background(), o, r, ApplyOptions{IPv6: IPv6Off, HasIPv6: hasV6})
		require.NoError(t, err)
		assert.Len(t, r.calls, 2)
		assert.Equal(t, "--ipv6=off", res.IPv6Skipped)
	})
	t.Run("auto with IPv6 but no ip6tables fails closed", func(t *testing.T) {
		r := &fakeRunner{fail: map[string]error{"ip6tables-save": &CommandError{Name: "ip6tables-save", Err: exec.ErrNotFound}}}
		res, err := Apply(context.Background(), o, r, ApplyOptions{HasIPv6: hasV6})
		require.ErrorIs(t, err, exec.ErrNotFound)
		assert.ErrorContains(t, err, "IPv6 egress would bypass the sidecar")
		assert.ErrorContains(t, err, "--ipv6=off")
		assert.Equal(t, v4, res.IPv4, "IPv4 was installed before the failure")
	})
	t.Run("IPv6 detection error", func(t *testing.T) {
		_, err := Apply(context.Background(), o, &fakeRunner{}, ApplyOptions{HasIPv6: func() (bool, error) { return false, errors.New("boom") }})
		assert.ErrorContains(t, err, "detect IPv6")
	})
	t.Run("restore error carries stderr", func(t *testing.T) {
		r := &fakeRunner{fail: map[string]error{"iptables-restore": &CommandError{
			Name: "iptables-restore", Args: []string{"--noflush"},
			Stderr: "iptables-restore: line 5 failed\n", Err: errors.New("exit status 1"),
		}}}
		_, err := Apply(context.Background(), o, r, ApplyOptions{IPv6: IPv6Off})
		assert.EqualError(t, err, "capture: install the IPv4 rules: iptables-restore --noflush: exit status 1: iptables-restore: line 5 failed")
	})
	t.Run("backends", func(t *testing.T) {
		for b, want := range map[Backend][]string{
			BackendLegacy: {"iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore"},
			BackendNFT:    {"iptables-nft-save", "iptables-nft-restore", "ip6tables-nft-save", "ip6tables-nft-restore"},
		} {
			r := &fakeRunner{}
			_, err := Apply(context.Background(), o, r, ApplyOptions{IPv6: IPv6On, Backend: b})
			require.NoError(t, err)
			var got []string
			for _, c := range r.calls {
				got = append(got, c.name)
			}
			assert.Equal(t, want, got)
		}
	})
	t.Run("bad mode", func(t *testing.T) {
		_, err := Apply(context.Background(), o, &fakeRunner{}, ApplyOptions{IPv6: "maybe"})
		assert.ErrorContains(t, err, `ipv6 mode "maybe"`)
	})
}

func TestIptablesParseModes(t *testing.T) {
	for in, want := range map[string]IPv6Mode{"": IPv6Auto, "auto": IPv6Auto, "ON": IPv6On, "off": IPv6Off} {
		m, err := ParseIPv6Mode(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, m)
	}
	_, err := ParseIPv6Mode("yes")
	require.Error(t, err)
	for in, want := range map[string]Backend{"": BackendDefault, "default": BackendDefault, "legacy": BackendLegacy, "nft": BackendNFT} {
		b, err := ParseBackend(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, b)
	}
	_, err = ParseBackend("xtables")
	require.Error(t, err)
}

func TestIptablesExecRunner(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	out, err := ExecRunner{}.Run(context.Background(), sh, []string{"-c", "cat; echo oops >&2"}, []byte("in"))
	require.NoError(t, err)
	assert.Equal(t, "in", string(out))

	_, err = ExecRunner{}.Run(context.Background(), sh, []string{"-c", "echo line 3 failed >&2; exit 2"}, nil)
	var ce *CommandError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, sh+" -c echo line 3 failed >&2; exit 2: exit status 2: line 3 failed", err.Error())

	_, err = ExecRunner{}.Run(context.Background(), "egressguard-no-such-iptables-restore", nil, nil)
	require.ErrorIs(t, err, exec.ErrNotFound)
}
