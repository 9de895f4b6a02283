package secretscan

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteTextDetail: by default skipped files are counted by reason with
// one example each, -v lists them all, -q writes the findings only.
func TestWriteTextDetail(t *testing.T) {
	res := &Result{
		Findings: []Finding{{File: "app.env", Line: 1, Column: 5, Severity: SeverityCritical, Kind: KindSecret, Rule: "stripe-secret-key", Message: "live key", Redacted: "sk_live_…", Fingerprint: "f1"}},
		Notices: []Notice{
			{File: "a.png", Reason: "binary file (NUL byte in the first 8 KiB)", Skipped: true},
			{File: "app.env", Line: 3, Reason: "egressguard:allow without a reason is ignored"},
			{File: "b.png", Reason: "binary file (NUL byte in the first 8 KiB)", Skipped: true},
			{File: "dump.sql", Reason: "12.0 MiB exceeds the 1.0 MiB limit (--max-file-size); not read", Skipped: true},
			{File: "old.sql", Reason: "commit 0123456789ab: 3.0 MiB exceeds the 1.0 MiB limit; not read", Skipped: true},
			{File: "secret", Reason: "cannot read: permission denied", Skipped: true},
		},
		Files: 2, Bytes: 100,
	}
	finding := "app.env:1:5: critical secret [stripe-secret-key] live key: sk_live_… fingerprint=f1\n"
	summary := "1 findings (1 secrets) in 2 files (100 B); 5 skipped, 0 ignored, 0 allowed\n"

	var b bytes.Buffer
	require.NoError(t, WriteTextDetail(&b, res, TextSummary))
	assert.Equal(t, finding+
		"app.env:3: note: egressguard:allow without a reason is ignored\n"+
		"skipped 2 files: binary file (NUL byte in the first 8 KiB), e.g. a.png: skipped: binary file (NUL byte in the first 8 KiB)\n"+
		"skipped 2 files: larger than the size limit (--max-file-size), e.g. dump.sql: skipped: 12.0 MiB exceeds the 1.0 MiB limit (--max-file-size); not read\n"+
		"skipped 1 file: cannot read, e.g. secret: skipped: cannot read: permission denied\n"+
		"(-v lists every skipped file)\n"+summary, b.String())

	b.Reset()
	require.NoError(t, WriteTextDetail(&b, res, TextVerbose))
	assert.Equal(t, 8, bytes.Count(b.Bytes(), []byte("\n")), "a line per finding and notice, and the summary")
	assert.Contains(t, b.String(), "b.png: skipped: binary file")

	b.Reset()
	require.NoError(t, WriteTextDetail(&b, res, TextQuiet))
	assert.Equal(t, finding, b.String())
}
