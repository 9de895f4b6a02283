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

	"github.com/egressguard/egressguard/secrets-scan/testdata/corpusgen"
)

// productionOf adapts the corpus catalog the way cmd/egressguard adapts the
// policy catalog.
func productionOf(c *corpusgen.Catalog) Production {
	p := Production{
		Zones: c.Zones, CIDRs: c.CIDRs, AWSAccounts: c.AWSAccounts, GCPProjects: c.GCPProjects,
		JWTIssuers: c.JWTIssuers, JWTAudiences: c.JWTAudiences,
		AccountIDs:   map[string][]string{"twilio": c.TwilioSIDs},
		Fingerprints: []FingerprintSet{{Algorithm: "sha256", Salt: c.FingerprintSalt, Values: c.Fingerprints(), Source: "corpus"}},
	}
	for _, pr := range c.Providers {
		p.Providers = append(p.Providers, ProviderEndpoint{Provider: pr.Name, Live: pr.Live, Sandbox: pr.Sandbox})
	}
	return p
}

// TestCorpusPrecisionRecall scans a generated, labeled corpus and requires
// precision and recall of 1.0: every planted production credential or
// endpoint found at its file, line and rule, and nothing else.
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
			cat := corpusgen.NewCatalog(seed)
			m, err := corpusgen.Generate(dir, cat, corpusgen.Options{Seed: seed, Bytes: 1 << 20})
			require.NoError(t, err)
			d, err := NewDetector(productionOf(cat))
			require.NoError(t, err)
			res, err := NewScanner(d, Options{}, zaptest.NewLogger(t)).ScanPaths(context.Background(), []string{dir}, nil)
			require.NoError(t, err)
			assert.Empty(t, res.Notices)

			type key struct {
				file string
				line int
				rule string
			}
			want := map[key]corpusgen.Label{}
			cases := map[key]string{}
			positives := map[string]int{}
			for _, l := range m.Labels {
				k := key{dir + "/" + l.File, l.Line, l.Rule}
				if l.Positive {
					want[k] = l
					positives[l.Rule]++
				} else {
					cases[key{k.file, k.line, ""}] = l.Case
				}
			}
			got := map[key]bool{}
			var fps []string
			for _, f := range res.Findings {
				k := key{f.File, f.Line, f.Rule}
				got[k] = true
				if _, ok := want[k]; !ok {
					fps = append(fps, fmt.Sprintf("%s:%d %s (%s) negative case %q", f.File, f.Line, f.Rule, f.Message, cases[key{f.File, f.Line, ""}]))
				}
			}
			var fns []string
			for k, l := range want {
				if !got[k] {
					fns = append(fns, fmt.Sprintf("%s:%d %s (case %q)", k.file, k.line, k.rule, l.Case))
				}
			}
			sort.Strings(fps)
			sort.Strings(fns)
			tp := len(want) - len(fns)
			precision := float64(tp) / float64(max(tp+len(fps), 1))
			recall := float64(tp) / float64(max(len(want), 1))
			t.Logf("corpus: %d files, %d bytes, %d positives over %d rules, %d labels; precision %.4f recall %.4f",
				m.Files, m.Bytes, len(want), len(positives), len(m.Labels), precision, recall)
			require.Greater(t, len(positives), 20, "the corpus must exercise most rules")
			assert.Empty(t, fps, "false positives")
			assert.Empty(t, fns, "false negatives")
			assert.InDelta(t, 1.0, precision, 0)
			assert.InDelta(t, 1.0, recall, 0)
		})
	}
}
