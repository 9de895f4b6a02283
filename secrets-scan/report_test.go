package secretscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func exampleResult(t *testing.T) (*Result, *Detector) {
	d := newExampleDetector(t)
	res := &Result{Files: 2, Bytes: 100}
	fs, ns := d.Scan("deploy/app.env", []byte("STRIPE_KEY="+liveKey+"\nDATABASE_URL=postgres://app:${DB_PASSWORD}@db.prod.example.com/app\n"))
	res.Findings, res.Notices = fs, ns
	res.Notices = append(res.Notices, Notice{File: "deploy/huge.yaml", Reason: "too big", Skipped: true})
	return res, d
}

func TestJSONReportShape(t *testing.T) {
	res, _ := exampleResult(t)
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, res))
	var doc struct {
		Findings []map[string]any `json:"findings"`
		Summary  map[string]any   `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	require.Len(t, doc.Findings, 2)
	for _, f := range doc.Findings {
		for _, k := range []string{"file", "line", "column", "rule", "severity", "kind", "redacted", "fingerprint"} {
			assert.Contains(t, f, k)
		}
	}
	kinds := map[any]any{}
	for _, f := range doc.Findings {
		kinds[f["rule"]] = f["kind"]
	}
	assert.Equal(t, "secret", kinds[RuleStripeSecret])
	assert.Equal(t, "endpoint", kinds[RuleDatabaseURL], "a database URL without a literal password is an endpoint")
	assert.InDelta(t, 2, doc.Summary["findings"], 0)

	// A JSON report is a baseline: applying it drops every finding.
	base, err := LoadBaseline(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	res.ApplyBaseline(base)
	assert.Empty(t, res.Findings)
	assert.Equal(t, 2, res.Ignored)

	_, err = LoadBaseline(strings.NewReader("not-a-fingerprint\n"))
	require.Error(t, err)
}

// TestSARIFValid validates the SARIF log against the SARIF 2.1.0 JSON schema
// (embedded in go-sarif) and checks what GitHub code scanning reads.
func TestSARIFValid(t *testing.T) {
	res, d := exampleResult(t)
	var buf bytes.Buffer
	require.NoError(t, WriteSARIF(&buf, res, d.Rules(), "1.2.3"))
	rep, err := sarif.FromBytes(buf.Bytes())
	require.NoError(t, err)
	require.NoError(t, rep.Validate())

	var doc struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID         string         `json:"id"`
						Properties map[string]any `json:"properties"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID              string            `json:"ruleId"`
				RuleIndex           *int              `json:"ruleIndex"`
				Level               string            `json:"level"`
				PartialFingerprints map[string]string `json:"partialFingerprints"`
				Locations           []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine   int `json:"startLine"`
							StartColumn int `json:"startColumn"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
			Invocations []struct {
				ExecutionSuccessful bool  `json:"executionSuccessful"`
				Notifications       []any `json:"toolExecutionNotifications"`
			} `json:"invocations"`
		} `json:"runs"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	assert.Equal(t, "2.1.0", doc.Version)
	require.Len(t, doc.Runs, 1)
	run := doc.Runs[0]
	assert.Equal(t, "egressguard", run.Tool.Driver.Name)
	assert.Len(t, run.Tool.Driver.Rules, len(d.Rules()))
	for _, r := range run.Tool.Driver.Rules {
		assert.NotEmpty(t, r.Properties["security-severity"], r.ID)
	}
	require.Len(t, run.Results, 2)
	for _, r := range run.Results {
		require.NotNil(t, r.RuleIndex)
		assert.Equal(t, r.RuleID, run.Tool.Driver.Rules[*r.RuleIndex].ID)
		assert.NotEmpty(t, r.PartialFingerprints["egressguard/v1"])
		require.Len(t, r.Locations, 1)
		assert.Equal(t, "deploy/app.env", r.Locations[0].PhysicalLocation.ArtifactLocation.URI)
		assert.Positive(t, r.Locations[0].PhysicalLocation.Region.StartLine)
	}
	require.Len(t, run.Invocations, 1)
	assert.True(t, run.Invocations[0].ExecutionSuccessful)
	assert.Len(t, run.Invocations[0].Notifications, 1)
}

func TestTextReport(t *testing.T) {
	res, _ := exampleResult(t)
	var buf bytes.Buffer
	require.NoError(t, WriteText(&buf, res))
	out := buf.String()
	assert.Contains(t, out, "deploy/app.env:1:12: critical secret [stripe-live-secret-key]")
	assert.Contains(t, out, "deploy/huge.yaml: skipped: too big")
	assert.Contains(t, out, "2 findings (1 secrets) in 2 files")
}
