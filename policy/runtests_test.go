package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunTestsDefaults(t *testing.T) {
	e := sharedDefaultEngine(t)
	rep, err := RunTests(context.Background(), e)
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, rep.WriteText(&b, false))
	assert.Zero(t, rep.Failed(), b.String())
	assert.NotEmpty(t, rep.Rego, "the embedded Rego unit tests ran")
	assert.NotEmpty(t, rep.Scenarios, "the embedded scenarios ran")
	assert.Contains(t, b.String(), "0 failed")
}

func TestRunTestsOperatorScenarios(t *testing.T) {
	e := sharedOperatorEngine(t)
	rep, err := RunTestsWith(context.Background(), e, TestOptions{NoDefaults: true, Paths: []string{"testdata/scenarios/operator.yaml"}})
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, rep.WriteText(&b, true))
	assert.Zero(t, rep.Failed(), b.String())
	assert.Len(t, rep.Scenarios, 4)
	assert.Empty(t, rep.Rego)
}

func TestRunTestsNamesFailingScenario(t *testing.T) {
	e := sharedDefaultEngine(t)
	rep, err := RunTestsWith(context.Background(), e, TestOptions{NoDefaults: true, Paths: []string{"testdata/scenarios/failing.yaml"}})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Failed())
	var b strings.Builder
	require.NoError(t, rep.WriteText(&b, false))
	assert.Contains(t, b.String(), `FAIL scenario "this scenario is wrong on purpose" (testdata/scenarios/failing.yaml:2): got redirect by rule provider:paypal:api-m.paypal.com`)
	assert.Contains(t, b.String(), "want allow")
}

func TestRunTestsRegoInPolicyDir(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/catalogs/operator.yaml", dir+"/catalog.yaml")
	writeFile(t, dir+"/extra_test.rego", `package extra_test

import data.egressguard

# Operator tests run against the real merged catalog.
test_zone_denied if {
	d := egressguard.decision with input as {"workload": {"environment": "staging"}, "destination": {"host": "db.prod.example.com"}}
	d.action == "deny"
}

test_fails_on_purpose if {
	egressguard.plan.default == "deny" with input as {"workload": {"environment": "staging"}}
}
`)
	e := newTestEngine(t, Options{CatalogFiles: []string{dir + "/catalog.yaml"}, PolicyDir: dir})
	rep, err := RunTestsWith(context.Background(), e, TestOptions{NoDefaults: true})
	require.NoError(t, err)
	require.Len(t, rep.Rego, 2)
	var b strings.Builder
	require.NoError(t, rep.WriteText(&b, false))
	assert.Equal(t, 1, rep.Failed(), b.String())
	assert.Contains(t, b.String(), "FAIL rego extra_test.test_fails_on_purpose ("+dir+"/extra_test.rego:11)")
}

func TestRunTestsBadScenarioFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/bad.yaml", "scenarios:\n  - name: x\n    workload: {environment: staging}\n    dest: \"a.example:99999\"\n    want: block\n")
	e := sharedDefaultEngine(t)
	_, err := RunTestsWith(context.Background(), e, TestOptions{NoDefaults: true, Paths: []string{dir}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+"/bad.yaml:4: scenarios[0].dest: bad port")
	assert.Contains(t, err.Error(), dir+`/bad.yaml:5: scenarios[0].want: unknown action "block"`)
}
