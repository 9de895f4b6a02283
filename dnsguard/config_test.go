package dnsguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultsAreValid(t *testing.T) {
	require.NoError(t, Defaults().Validate())
}

func TestParseConfigValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "valid", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			_, err = ParseConfig(b)
			require.NoError(t, err)
		})
	}
	t.Run("full.yaml values", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("testdata", "config", "valid", "full.yaml"))
		require.NoError(t, err)
		cfg, err := ParseConfig(b)
		require.NoError(t, err)
		assert.Equal(t, "0.0.0.0:53", cfg.Listen)
		assert.Equal(t, []string{"10.96.0.10:53", "2001:db8::53"}, cfg.Upstreams)
		assert.Equal(t, BlockSinkhole, cfg.BlockResponse)
		assert.Equal(t, 800*time.Millisecond, cfg.UpstreamTimeout)
		assert.Equal(t, time.Hour, cfg.ServeStale)
		assert.Equal(t, 1400, cfg.UDPSize)
		assert.False(t, cfg.CheckUpstreams)
		assert.Equal(t, "/etc/resolv.conf", cfg.ResolvConf, "unset fields keep their defaults")
	})
}

func TestParseConfigInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "invalid", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			want, err := os.ReadFile(strings.TrimSuffix(file, ".yaml") + ".err")
			require.NoError(t, err, "every invalid fixture has a .err file with the expected messages")
			_, err = ParseConfig(b)
			require.Error(t, err)
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				assert.Contains(t, err.Error(), line)
			}
		})
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          []string
		err           string
	}{
		{"two nameservers", "nameserver 10.96.0.10\nnameserver 2001:db8::53\nsearch svc.cluster.local\n", []string{"10.96.0.10:53", "[2001:db8::53]:53"}, ""},
		{"none", "search example.com\n", nil, "names no nameserver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			cfg := Defaults()
			cfg.ResolvConf = path
			got, err := cfg.upstreamAddrs()
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), path)
				return
			}
			require.NoError(t, err)
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			assert.Equal(t, tc.want, s)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		cfg := Defaults()
		cfg.ResolvConf = filepath.Join(dir, "nope")
		_, err := cfg.upstreamAddrs()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot be read")
	})
}

// FuzzParseConfig: never panics; a configuration that parses validates,
// and validating it again gives the same answer.
func FuzzParseConfig(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "config", dir, "*.yaml"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		require.NoError(t, cfg.Validate())
		for _, u := range cfg.Upstreams {
			a, err := ParseUpstream(u)
			require.NoError(t, err)
			again, err := ParseUpstream(a.String())
			require.NoError(t, err)
			require.Equal(t, a, again, "ParseUpstream(String()) is a fixpoint")
		}
	})
}
