package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScanZoneIncludesApex: a catalog zone "*.X" covers X for the scanner
// as for DNS, the sidecar and policy eval (policy.ZoneHosts), so a
// database URL at the apex is a production credential; a host outside
// the zone is not.
func TestScanZoneIncludesApex(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.prod.example.com\"]\n"), 0o644))
	for host, prod := range map[string]bool{"prod.example.com": true, "db.prod.example.com": true, "notprod.example.com": false} {
		f := filepath.Join(dir, "app.env")
		require.NoError(t, os.WriteFile(f, []byte("DATABASE_URL=postgres://app:S3cr3tPassw0rdXyz@"+host+":5432/orders\n"), 0o644))
		out, err := runCLI(t, "scan", "--catalog", cat, f)
		if prod {
			assert.Equal(t, scanExitFindings, exitCode(err), "%s: %s", host, out)
			assert.Contains(t, out, "[production-database-url] postgres URL with a password for production host "+host)
		} else {
			assert.NotContains(t, out, "production host", host)
		}
	}
}
