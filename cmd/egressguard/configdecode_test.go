package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestConfigErrors: --config and --set problems name the user's file and
// line (or the --set), the key path and what the key wants; never a Go
// type name; all problems at once.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	bad := write("bad.yaml", "dns:\n  upstream_timeout: 2\n  cache_sise: 5\n  upstreams: 10.0.0.2\n  check_upstreams: maybe\nxds:\n  listen: [a]\n  max_streams: lots\n  listener_filters_timeout: soon\ndecisions:\n  recent: 5\n  recent: 6\n")
	_, err := loadServeConfig(bad)
	require.Error(t, err)
	dnsKeys := "listen, upstreams, resolv_conf, check_upstreams, block_response, cache_size, upstream_timeout, query_timeout, negative_ttl, max_ttl, serve_stale, udp_size, max_concurrent, allow_from, rrl"
	assert.Equal(t, strings.Join([]string{
		bad + ":2: dns.upstream_timeout: 2 has no unit: use 2s (or ms, m, h)",
		bad + ":3: dns.cache_sise: unknown key; did you mean dns.cache_size? (dns has " + dnsKeys + ")",
		bad + `:4: dns.upstreams: want a list of strings, not "10.0.0.2"`,
		bad + `:5: dns.check_upstreams: want true or false, not "maybe"`,
		bad + ":7: xds.listen: want a string, not a list",
		bad + `:8: xds.max_streams: want a whole number, not "lots"`,
		bad + `:9: xds.listener_filters_timeout: want a duration such as 1500ms or 2s, not "soon"`,
		bad + ":12: decisions.recent: set twice (first on line 11)",
	}, "\n"), err.Error())
	for _, goName := range []string{"time.Duration", "[]string", "dnsguard.", "serveConfig", "unmarshal"} {
		assert.NotContains(t, err.Error(), goName)
	}

	cases := []struct{ name, body, want string }{
		{"syntax", "dns:\n  listen: \"a\n", ":2: found unexpected end of stream"},
		{"not a mapping", "- a\n", ":1: want a mapping with the keys policy, inventory, dns, xds, webhook, intercept, admin, decisions, log, shutdown, not a list"},
		{"section not a mapping", "dns: 5\n", ":1: dns: want a mapping with the keys listen,"},
		{"far-off key", "zzz: 1\n", ":1: zzz: unknown key; the config has policy, inventory,"},
		{"float duration", "dns:\n  max_ttl: 1.5\n", ":2: dns.max_ttl: 1.5 has no unit: use 1.5s (or ms, m, h)"},
		{"nested section", "inventory:\n  kubernetes:\n    sync_timeout: 30\n", ":3: inventory.kubernetes.sync_timeout: 30 has no unit: use 30s"},
		{"list of strings", "policy:\n  catalogs: {a: b}\n", ":2: policy.catalogs: want a list of strings, not a mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body)
			_, err := loadServeConfig(p)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), p+tc.want), "got %q", err.Error())
		})
	}

	sets := []struct{ set, want string }{
		{"dns.upstream_timeout=2", "--set dns.upstream_timeout=2: dns.upstream_timeout: 2 has no unit: use 2s (or ms, m, h)"},
		{"dns.upstream_timout=2s", "--set dns.upstream_timout=2s: dns.upstream_timout: unknown key; did you mean dns.upstream_timeout? (dns has " + dnsKeys + ")"},
		{"dsn.listen=:53", "--set dsn.listen=:53: dsn: unknown key; did you mean dns? (the config has policy, inventory, dns, xds, webhook, intercept, admin, decisions, log, shutdown)"},
		{"dns.listen.port=1", "--set dns.listen.port=1: dns.listen.port: dns.listen is a single value, not a section"},
		{"dns.upstreams=[a, b", "--set dns.upstreams=[a, b: did not find expected ',' or ']'"},
		{"dns.cache_size=many", `--set dns.cache_size=many: dns.cache_size: want a whole number, not "many"`},
		{"dns=1", "--set dns=1: want section.key=value, e.g. dns.cache_size=50000"},
	}
	for _, tc := range sets {
		_, err := loadServeConfig("", tc.set)
		require.Error(t, err, tc.set)
		assert.Equal(t, tc.want, err.Error())
	}
}

// TestConfigDecodeMatchesYAML: the shipped example config decodes to what
// yaml.v3's strict decoder makes of it.
func TestConfigDecodeMatchesYAML(t *testing.T) {
	b, err := os.ReadFile("../../deploy/examples/config.yaml")
	require.NoError(t, err)
	got := defaultServeConfig()
	require.NoError(t, decodeConfigYAML("config.yaml", b, &got))
	want, ok := strictYAML(b)
	require.True(t, ok)
	assert.Equal(t, want, got)

	cfg, err := loadServeConfig("", "dns.negative_ttl=45s", "dns.upstreams=", "inventory.kubernetes.sync_timeout=1m30s")
	require.NoError(t, err)
	assert.Equal(t, 45*time.Second, cfg.DNS.NegativeTTL)
	assert.Nil(t, cfg.DNS.Upstreams, "an empty value clears a list")
	assert.Equal(t, 90*time.Second, cfg.Inventory.Kubernetes.SyncTimeout)
}

// strictYAML decodes b over the defaults with yaml.v3 and KnownFields.
func strictYAML(b []byte) (serveConfig, bool) {
	c := defaultServeConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, false
	}
	return c, true
}

// FuzzDecodeConfig: the decoder never panics, and whatever it accepts
// yaml.v3's strict decoder accepts with the same result.
func FuzzDecodeConfig(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/examples/config.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("dns:\n  upstream_timeout: 2\n  upstreams: [a, b]\n"))
	f.Add([]byte("xds: {listen: ':1', max_streams: 3}\ndecisions: {recent: ~}\n"))
	f.Add([]byte("log: &a {level: info}\nadmin: *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := defaultServeConfig()
		if err := decodeConfigYAML("f.yaml", b, &got); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		want, ok := strictYAML(b)
		if !ok {
			return // yaml.v3 refuses it (e.g. an int in a duration key it also refuses differently): nothing to compare
		}
		require.Equal(t, want, got)
	})
}
