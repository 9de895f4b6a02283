package deploy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestChartPrometheusRule: opt-in like the ServiceMonitor, refused without
// the Prometheus Operator's API, and every alert reads metrics (and
// labels) the packages register, checked as the dashboard's queries are.
func TestChartPrometheusRule(t *testing.T) {
	ch := loadChart(t)
	objs, _, err := renderChart(t, ch, "", capabilities("monitoring.coreos.com/v1"))
	require.NoError(t, err)
	assert.Empty(t, find[*prometheusRule](objs), "off by default")

	_, _, err = renderChart(t, ch, "prometheusRule: {enabled: true}\n", capabilities())
	require.ErrorContains(t, err, "prometheusRule.enabled: the cluster does not serve monitoring.coreos.com/v1")

	objs, _, err = renderChart(t, ch, "prometheusRule: {enabled: true, labels: {release: prom}}\n", capabilities("monitoring.coreos.com/v1"))
	require.NoError(t, err)
	checkManifests(t, objs)
	rules := find[*prometheusRule](objs)
	require.Len(t, rules, 1)
	pr := rules[0]
	assert.Equal(t, releaseNS, pr.Namespace)
	assert.Equal(t, "prom", pr.Labels["release"])

	// The alerts' queries go through the dashboard's metric checker.
	var d dashboard
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for i, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			p := panel{ID: i + 1, Type: "alert", Title: r.Alert}
			p.Datasource = &struct {
				UID string `json:"uid"`
			}{UID: "${datasource}"}
			p.Targets = append(p.Targets, struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			}{RefID: "A", Expr: r.Expr})
			d.Panels = append(d.Panels, p)
			assert.Contains(t, r.Expr, `namespace="`+releaseNS+`"`, "%s reads this release's metrics only", r.Alert)
			assert.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			assert.Contains(t, r.Annotations["description"], "{{ $labels.pod }}", "%s: Prometheus templates reach the rule unexpanded", r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
		}
	}
	problems, used := dashboardProblems(d, registeredMetrics(t))
	assert.Empty(t, problems)
	assert.Equal(t, []string{
		"EgressguardPolicyReloadFailed", "EgressguardInventoryReloadFailed", "EgressguardXDSNACK",
		"EgressguardDecisionRecordsLost", "EgressguardDNSUpstreamFailing", "EgressguardWebhookErrors",
	}, alerts)
	for _, m := range []string{"egressguard_policy_reloads_total", "egressguard_xds_nacks_total", "egressguard_decisionlog_write_errors_total",
		"egressguard_dnsguard_upstream_errors_total", "egressguard_inject_errors_total"} {
		assert.True(t, used[m], "an alert reads %s", m)
	}
	assert.Contains(t, strings.Join(alerts, ","), "DNSUpstream")

	_, _, err = renderChart(t, ch, "prometheusRule: {enabled: true, dnsUpstreamErrorRatio: 0}\n", capabilities("monitoring.coreos.com/v1"))
	require.ErrorContains(t, err, "dnsUpstreamErrorRatio")
}

// TestChartDNSPriorityClass: dnsguard runs with a priority class by
// default (the chart's own), or the one named, or none when asked.
func TestChartDNSPriorityClass(t *testing.T) {
	ch := loadChart(t)
	objs, _, err := renderChart(t, ch, "", capabilities())
	require.NoError(t, err)
	r := checkManifests(t, objs)
	pcs := find[*schedulingv1.PriorityClass](objs)
	require.Len(t, pcs, 1)
	assert.Equal(t, pcs[0].Name, r.dg.Spec.Template.Spec.PriorityClassName)
	assert.Equal(t, int32(1000000), pcs[0].Value)
	assert.False(t, pcs[0].GlobalDefault)
	assert.Empty(t, r.cp.Spec.Template.Spec.PriorityClassName, "the control plane keeps its own setting")

	objs, _, err = renderChart(t, ch, "dnsguard: {priorityClassName: system-node-critical}\n", capabilities())
	require.NoError(t, err)
	r = checkManifests(t, objs)
	assert.Empty(t, find[*schedulingv1.PriorityClass](objs))
	assert.Equal(t, "system-node-critical", r.dg.Spec.Template.Spec.PriorityClassName)

	objs, _, err = renderChart(t, ch, "dnsguard: {priorityClass: {create: false}}\n", capabilities())
	require.NoError(t, err)
	r = checkManifests(t, objs)
	assert.Empty(t, find[*schedulingv1.PriorityClass](objs))
	assert.Empty(t, r.dg.Spec.Template.Spec.PriorityClassName)
}
