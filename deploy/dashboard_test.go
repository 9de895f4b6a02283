package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/dnsguard"
	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/xds"
)

const dashboardFile = "grafana/egressguard-dashboard.json"

// descRecorder is a Registerer that keeps what is registered, so the
// metric names and label names come from the packages' NewMetrics, not from
// a list kept by hand.
type descRecorder struct {
	reg   *prometheus.Registry
	descs chan *prometheus.Desc
}

func (d *descRecorder) Register(c prometheus.Collector) error {
	if err := d.reg.Register(c); err != nil {
		return err
	}
	c.Describe(d.descs)
	return nil
}

func (d *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d *descRecorder) Unregister(c prometheus.Collector) bool { return d.reg.Unregister(c) }

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// registeredMetrics returns every egressguard metric name with its label
// names, as the packages register them in serve.
func registeredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	rec := &descRecorder{reg: prometheus.NewRegistry(), descs: make(chan *prometheus.Desc, 1000)}
	dnsguard.NewMetrics(rec)
	xds.NewMetrics(rec)
	policy.NewMetrics(rec)
	inventory.NewMetrics(rec)
	kube.NewMetrics(rec)
	inject.NewMetrics(rec)
	decisionlog.NewMetrics(rec)
	close(rec.descs)
	out := map[string][]string{}
	for d := range rec.descs {
		s := d.String()
		m := descName.FindStringSubmatch(s)
		require.NotNil(t, m, s)
		var lbls []string
		if l := descLabels.FindStringSubmatch(s); l != nil && strings.TrimSpace(l[1]) != "" {
			for x := range strings.SplitSeq(l[1], ",") {
				lbls = append(lbls, strings.TrimSpace(x))
			}
		}
		out[m[1]] = lbls
	}
	require.NotEmpty(t, out)
	return out
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var (
	metricRef   = regexp.MustCompile(`\begressguard_[a-z0-9_]+`)
	selectorRef = regexp.MustCompile(`\b(egressguard_[a-z0-9_]+)\{([^}]*)\}`)
	matcherRef  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	byRef       = regexp.MustCompile(`\bby \(([^)]*)\)`)
)

// Labels Prometheus adds when it scrapes (ServiceMonitor target labels and
// the histogram bucket label).
var targetLabels = []string{"namespace", "pod", "service", "instance", "job", "container", "endpoint", "le"}

// dashboardProblems checks the dashboard against the registered metrics:
// every metric queried is one a package registers (histograms through
// _bucket/_sum/_count), every label selected or grouped by exists on the
// metrics of that query, panels are well formed. It returns every problem.
func dashboardProblems(d dashboard, known map[string][]string) (problems []string, used map[string]bool) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	base := func(name string) (string, bool) {
		if _, ok := known[name]; ok {
			return name, true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if n, ok := strings.CutSuffix(name, suf); ok {
				if _, ok := known[n]; ok {
					return n, true
				}
			}
		}
		return "", false
	}
	used = map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			bad("panel id %d is not unique", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 {
			bad("panel %q does not fit the grid", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			bad("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			bad("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricRef.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				bad("panel %q query %s reads no egressguard metric", p.Title, tg.RefID)
			}
			var lbls []string
			for _, n := range names {
				b, ok := base(n)
				if !ok {
					bad("panel %q: metric %s is not registered by any package", p.Title, n)
					continue
				}
				used[b] = true
				lbls = append(lbls, known[b]...)
			}
			for _, m := range selectorRef.FindAllStringSubmatch(tg.Expr, -1) {
				b, _ := base(m[1])
				for _, lm := range matcherRef.FindAllStringSubmatch(m[2], -1) {
					if !slices.Contains(known[b], lm[1]) && !slices.Contains(targetLabels, lm[1]) {
						bad("panel %q: %s has no label %s", p.Title, m[1], lm[1])
					}
				}
			}
			for _, m := range byRef.FindAllStringSubmatch(tg.Expr, -1) {
				for l := range strings.SplitSeq(m[1], ",") {
					l = strings.TrimSpace(l)
					if !slices.Contains(lbls, l) && !slices.Contains(targetLabels, l) {
						bad("panel %q: grouping by %s, which none of %v has", p.Title, l, names)
					}
				}
			}
		}
	}
	return problems, used
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.Panels)
	return d
}

// TestDashboardUsesRealMetrics: the dashboard passes dashboardProblems, and
// the subsystems the issue names each have a panel.
func TestDashboardUsesRealMetrics(t *testing.T) {
	known := registeredMetrics(t)
	d := loadDashboard(t)
	assert.Equal(t, "egressguard", d.UID)
	problems, used := dashboardProblems(d, known)
	assert.Empty(t, problems)
	for _, sub := range []string{"egressguard_dnsguard_", "egressguard_xds_", "egressguard_policy_", "egressguard_inventory_kube_", "egressguard_inject_"} {
		assert.True(t, slices.ContainsFunc(mapKeys(used), func(n string) bool { return strings.HasPrefix(n, sub) }), "a panel for %s*", sub)
	}
	for _, must := range []string{
		"egressguard_dnsguard_queries_total", "egressguard_dnsguard_upstream_duration_seconds",
		"egressguard_xds_connected_proxies", "egressguard_xds_pushes_total", "egressguard_xds_push_latency_seconds", "egressguard_xds_nacks_total",
		"egressguard_policy_reloads_total", "egressguard_inventory_kube_workloads", "egressguard_inject_injected_total",
	} {
		assert.True(t, used[must], "the dashboard shows %s", must)
	}
}

// TestDashboardCheckCatchesTypos: the check fails on a misspelt metric,
// selector label or grouping label, so it is not vacuous.
func TestDashboardCheckCatchesTypos(t *testing.T) {
	known := registeredMetrics(t)
	for _, tc := range []struct{ from, to, want string }{
		{"egressguard_xds_connected_proxies", "egressguard_xds_connected_proxy", "not registered"},
		{"sum by (type) (rate(egressguard_xds_pushes_total", "sum by (rule) (rate(egressguard_xds_pushes_total", "grouping by rule"},
		{`egressguard_xds_nacks_total{namespace`, `egressguard_xds_nacks_total{kind="x",namespace`, "has no label kind"},
	} {
		t.Run(tc.to, func(t *testing.T) {
			d := loadDashboard(t)
			hit := false
			for i := range d.Panels {
				for j := range d.Panels[i].Targets {
					e := &d.Panels[i].Targets[j].Expr
					if strings.Contains(*e, tc.from) {
						*e = strings.Replace(*e, tc.from, tc.to, 1)
						hit = true
					}
				}
			}
			require.True(t, hit, "the dashboard contains %s", tc.from)
			problems, _ := dashboardProblems(d, known)
			require.NotEmpty(t, problems)
			assert.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
