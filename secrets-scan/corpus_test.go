package secretscan

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/secrets-scan/testdata/stagegen"
)

// productionOf adapts the tree's catalog the way cmd/egressguard adapts the
// policy catalog.
func productionOf(c *stagegen.Catalog) Production {
	p := Production{
		Zones: c.Zones, CIDRs: c.CIDRs, AWSAccounts: c.AWSAccounts, GCPProjects: c.GCPProjects,
		JWTIssuers:   c.JWTIssuers,
		AccountIDs:   map[string][]string{"twilio": c.TwilioSIDs},
		Fingerprints: []FingerprintSet{{Algorithm: "sha256", Salt: c.FingerprintSalt, Values: c.Fingerprints(), Source: "stagegen"}},
	}
	for _, pr := range c.Providers {
		p.Providers = append(p.Providers, ProviderEndpoint{Provider: pr.Name, Live: pr.Live, Sandbox: pr.Sandbox})
	}
	return p
}

// score is one kind's confusion counts.
type score struct{ tp, fp, fn int }

func (s score) precision() float64 { return float64(s.tp) / float64(max(s.tp+s.fp, 1)) }
func (s score) recall() float64    { return float64(s.tp) / float64(max(s.tp+s.fn, 1)) }
func (s score) f1() float64 {
	p, r := s.precision(), s.recall()
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

// scoreCorpus matches findings to the generator's labels by file, kind and
// line; every unmatched finding is a false positive (with the case that
// planted its line), every unmatched label a false negative.
func scoreCorpus(dir string, m *stagegen.Manifest, findings []Finding) (map[string]*score, []string, []string) {
	type at struct {
		file string
		line int
		kind string
	}
	want := map[at]*stagegen.Label{}
	scores := map[string]*score{}
	for _, k := range []string{stagegen.Secret, stagegen.Identifier, stagegen.Credential, stagegen.Endpoint} {
		scores[k] = &score{}
	}
	for i, l := range m.Labels {
		for d := range l.Span {
			want[at{dir + "/" + l.File, l.Line + d, l.Kind}] = &m.Labels[i]
		}
	}
	matched := map[*stagegen.Label]bool{}
	seen := map[at]bool{}
	var fps, fns []string
	for _, f := range findings {
		k := at{f.File, f.Line, string(f.Kind)}
		if seen[k] {
			continue
		}
		seen[k] = true
		if scores[k.kind] == nil {
			scores[k.kind] = &score{}
		}
		if l := want[k]; l != nil && !matched[l] {
			matched[l] = true
			scores[k.kind].tp++
			continue
		}
		scores[k.kind].fp++
		rel := strings.TrimPrefix(f.File, dir+"/")
		fps = append(fps, fmt.Sprintf("%s:%d %s %s (%s) case %q", rel, f.Line, f.Kind, f.Rule, f.Message, m.Where[fmt.Sprintf("%s:%d", rel, f.Line)]))
	}
	for i, l := range m.Labels {
		if !matched[&m.Labels[i]] {
			scores[l.Kind].fn++
			fns = append(fns, fmt.Sprintf("%s:%d %s (case %q)", l.File, l.Line, l.Kind, l.Case))
		}
	}
	sort.Strings(fps)
	sort.Strings(fns)
	return scores, fps, fns
}

// TestCorpusPrecisionRecall scans trees from stagegen, a generator written
// from the README's evidence contract and not from the scanner (it mixes a
// staging credential with other services' production hosts and other
// providers' live markers in one file, plants tokens with no environment
// at all, and wraps credentials in JSON in YAML strings and base64), and
// requires precision and recall of 1.0 for every kind of finding.
func TestCorpusPrecisionRecall(t *testing.T) {
	seeds := []uint64{1, 2}
	if s := os.Getenv("SECRETSCAN_CORPUS_SEEDS"); s != "" { // more seeds, by hand: SECRETSCAN_CORPUS_SEEDS=3-20
		lo, hi, _ := strings.Cut(s, "-")
		a, _ := strconv.ParseUint(lo, 10, 64)
		b, _ := strconv.ParseUint(hi, 10, 64)
		seeds = nil
		for x := a; x <= max(a, b); x++ {
			seeds = append(seeds, x)
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			dir := t.TempDir()
			cat := stagegen.NewCatalog(seed)
			m, err := stagegen.Generate(dir, cat, stagegen.Options{Seed: seed, Bytes: 1 << 20})
			require.NoError(t, err)
			d, err := NewDetector(productionOf(cat))
			require.NoError(t, err)
			res, err := NewScanner(d, Options{}, zaptest.NewLogger(t)).ScanPaths(context.Background(), []string{dir}, nil)
			require.NoError(t, err)
			assert.Empty(t, res.Notices)
			require.Greater(t, len(m.Cases), 25, "the tree must exercise most cases")

			scores, fps, fns := scoreCorpus(dir, m, res.Findings)
			var kinds []string
			for k := range scores {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			var all score
			for _, k := range kinds {
				s := scores[k]
				all.tp, all.fp, all.fn = all.tp+s.tp, all.fp+s.fp, all.fn+s.fn
				t.Logf("seed %d %-10s tp %5d fp %4d fn %4d precision %.4f recall %.4f F1 %.4f", seed, k, s.tp, s.fp, s.fn, s.precision(), s.recall(), s.f1())
			}
			t.Logf("seed %d %-10s tp %5d fp %4d fn %4d precision %.4f recall %.4f F1 %.4f (%d files, %d bytes)", seed, "all", all.tp, all.fp, all.fn, all.precision(), all.recall(), all.f1(), m.Files, m.Bytes)
			assert.Empty(t, fps[:min(len(fps), 30)], "%d false positives (first 30)", len(fps))
			assert.Empty(t, fns[:min(len(fns), 30)], "%d false negatives (first 30)", len(fns))
		})
	}
}
