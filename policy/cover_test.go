package policy

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunTestsCoverageEmbeddedPolicy(t *testing.T) {
	e := sharedDefaultEngine(t)
	rep, err := RunTestsWith(context.Background(), e, TestOptions{Coverage: true})
	require.NoError(t, err)
	require.Zero(t, rep.Failed())
	require.NotNil(t, rep.Coverage)
	c := rep.Coverage
	require.Len(t, c.Files, 1, "only the policy module, not its tests")
	f := c.Files[0]
	assert.Equal(t, "embedded:rego/egressguard.rego", f.File)
	assert.Positive(t, f.CoveredLines)
	assert.Greater(t, c.Coverage, 50.0)
	assert.LessOrEqual(t, c.Coverage, 100.0)
	assert.Equal(t, f.CoveredLines, c.CoveredLines)
	assert.Equal(t, f.NotCoveredLines, c.NotCoveredLines)
	assert.InDelta(t, 100*float64(c.CoveredLines)/float64(c.CoveredLines+c.NotCoveredLines), c.Coverage, 0.01)
	n := strings.Count(string(defaultRego(false)[0].Data), "\n") + 1
	for i, r := range f.NotCovered {
		assert.LessOrEqual(t, r.Start, r.End)
		assert.Positive(t, r.Start)
		assert.LessOrEqual(t, r.End, n)
		if i > 0 {
			assert.Greater(t, r.Start, f.NotCovered[i-1].End+1, "ranges are sorted and merged")
		}
	}

	var b strings.Builder
	require.NoError(t, c.WriteText(&b))
	assert.Contains(t, b.String(), "embedded:rego/egressguard.rego (")
	assert.Contains(t, b.String(), "total (")

	js, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"coverage":{"files":[{"file":"embedded:rego/egressguard.rego"`)

	rep, err = RunTestsWith(context.Background(), e, TestOptions{})
	require.NoError(t, err)
	assert.Nil(t, rep.Coverage, "coverage only when asked")
}

func TestRunTestsCoveragePolicyDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/extra.rego", `package extra

answer := 42 if input.q == "life"

never_tested if {
	input.x == 1
	input.y == 2
}
`)
	writeFile(t, dir+"/extra_test.rego", `package extra_test

test_answer if data.extra.answer == 42 with input as {"q": "life"}
`)
	e := newTestEngine(t, Options{PolicyDir: dir})
	rep, err := RunTestsWith(context.Background(), e, TestOptions{Coverage: true})
	require.NoError(t, err)
	require.Zero(t, rep.Failed())
	require.NotNil(t, rep.Coverage)
	files := map[string]FileCoverage{}
	for _, f := range rep.Coverage.Files {
		files[f.File] = f
	}
	require.Len(t, files, 2, "the embedded module and extra.rego; tests are not counted")
	extra, ok := files[filepath.Join(dir, "extra.rego")]
	require.True(t, ok)
	assert.Equal(t, []LineRange{{Start: 5, End: 7}}, extra.NotCovered)
	assert.Equal(t, 1, extra.CoveredLines)
	assert.Equal(t, 3, extra.NotCoveredLines)
	assert.InDelta(t, 25.0, extra.Coverage, 0.001)
	emb := files["embedded:rego/egressguard.rego"]
	assert.Equal(t, emb.CoveredLines+1, rep.Coverage.CoveredLines)
	assert.Equal(t, emb.NotCoveredLines+3, rep.Coverage.NotCoveredLines)

	var b strings.Builder
	require.NoError(t, rep.Coverage.WriteText(&b))
	assert.Contains(t, b.String(), "coverage  25.00%  "+filepath.Join(dir, "extra.rego")+" (1/4 lines) not covered: 5-7\n")

	// Without tests, nothing of the policy is covered.
	rep, err = RunTestsWith(context.Background(), e, TestOptions{Coverage: true, NoDefaults: true, RegoFilter: "no_such_test"})
	require.NoError(t, err)
	require.NotNil(t, rep.Coverage)
	assert.Zero(t, rep.Coverage.CoveredLines)
	assert.Zero(t, rep.Coverage.Coverage)
}

func TestCoverageThreshold(t *testing.T) {
	c := &CoverageReport{CoveredLines: 94, NotCoveredLines: 6, Coverage: 94}
	require.NoError(t, c.CheckThreshold(94))
	require.NoError(t, c.CheckThreshold(0))
	assert.EqualError(t, c.CheckThreshold(94.5), "policy test: Rego coverage 94.00% is below the threshold 94.5%")

	for _, tc := range []struct {
		name, content string
		want          float64
		err           string
	}{
		{"integer", "80\n", 80, ""},
		{"decimal and spaces", "  92.5 \n", 92.5, ""},
		{"percent sign", "75%", 75, ""},
		{"zero", "0", 0, ""},
		{"hundred", "100", 100, ""},
		{"not a number", "eighty", 0, `coverage threshold "eighty": want a single number between 0 and 100`},
		{"two numbers", "80 90", 0, `coverage threshold "80 90"`},
		{"above 100", "101", 0, `coverage threshold "101"`},
		{"negative", "-1", 0, `coverage threshold "-1"`},
		{"empty", "", 0, `coverage threshold ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, CoverageThresholdFile), tc.content)
			got, ok, err := ReadCoverageThreshold(dir)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), filepath.Join(dir, CoverageThresholdFile)+": "+tc.err)
				return
			}
			require.NoError(t, err)
			assert.True(t, ok)
			assert.InDelta(t, tc.want, got, 0)
		})
	}

	got, ok, err := ReadCoverageThreshold(t.TempDir())
	require.NoError(t, err)
	assert.False(t, ok, "no file, no threshold")
	assert.Zero(t, got)
}
