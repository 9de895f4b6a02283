package deploy

import (
	"flag"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/engine"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the generated kustomize files from the Helm chart")

const (
	kustomizeBase    = "kustomize/base"
	kustomizeStaging = "kustomize/overlays/staging"
	generatedHeader  = "# Generated from deploy/helm/egressguard by `go test ./deploy -run TestKustomizeFilesMatchChart -update`.\n# Edit the chart (or the test's values), not this file.\n"
)

// The values the kustomize files are rendered with. The base is the end
// state (enforce; the webhook certificate from cert-manager, since
// kustomize cannot generate one); the staging overlay is the first rollout
// step: staging in report mode, its NetworkPolicy, a pinned image tag.
const (
	baseValues = `
mode: enforce
configChecksum: false
webhook: {certificate: {certManager: true}}
networkPolicy: {enabled: false}
stagingCA: {existingSecret: egressguard-staging-ca}
`
	stagingValues = `
mode: enforce
environments: {report: [staging]}
configChecksum: false
image: {tag: "0.1.0"}
webhook: {certificate: {certManager: true}}
networkPolicy: {enabled: true, namespaces: [staging]}
stagingCA: {existingSecret: egressguard-staging-ca}
`
)

// generated is what the chart renders for the kustomize files: file name
// (relative to deploy/) -> content. The base gets every template; the
// overlay gets the NetworkPolicy and, as patches, the ConfigMaps whose
// content depends on the overlay's values.
func generated(t *testing.T) map[string]string {
	t.Helper()
	ch := loadChart(t)
	render := func(values string) map[string]string {
		vals, err := common.ReadValues([]byte(values))
		require.NoError(t, err)
		top, err := commonutil.ToRenderValues(ch, vals, common.ReleaseOptions{
			Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true,
		}, capabilities("cert-manager.io/v1"))
		require.NoError(t, err)
		out, err := engine.Engine{Strict: true}.RenderWithContext(t.Context(), ch, top)
		require.NoError(t, err)
		return out
	}
	files := map[string]string{}
	for name, body := range render(baseValues) {
		base := path.Base(name)
		if !strings.HasSuffix(base, ".yaml") || strings.TrimSpace(body) == "" {
			continue
		}
		files[path.Join(kustomizeBase, base)] = forKustomize(body)
	}
	st := render(stagingValues)
	for _, tmpl := range []string{"networkpolicy.yaml", "configmap-config.yaml", "configmap-catalog.yaml"} {
		body := st["egressguard/templates/"+tmpl]
		require.NotEmpty(t, strings.TrimSpace(body), tmpl)
		files[path.Join(kustomizeStaging, tmpl)] = forKustomize(body)
	}
	return files
}

var (
	helmChartLabel = regexp.MustCompile(`(?m)^\s*helm\.sh/chart: .*\n`)
	managedByHelm  = regexp.MustCompile(`(?m)^(\s*app\.kubernetes\.io/managed-by:) Helm$`)
	leadingBlank   = regexp.MustCompile(`^(\s*---\s*\n)+`)
)

// forKustomize drops what only Helm means (the chart label) and marks the
// objects as managed by kustomize.
func forKustomize(body string) string {
	body = helmChartLabel.ReplaceAllString(body, "")
	body = managedByHelm.ReplaceAllString(body, "$1 kustomize")
	body = leadingBlank.ReplaceAllString(strings.TrimLeft(body, "\n"), "")
	return generatedHeader + strings.TrimRight(body, "\n") + "\n"
}

// TestKustomizeFilesMatchChart: the kustomize base and the overlay's
// generated files are the chart's output (so the two install paths deploy
// the same objects); -update rewrites them and removes stale ones.
func TestKustomizeFilesMatchChart(t *testing.T) {
	want := generated(t)
	var existing []string
	for _, dir := range []string{kustomizeBase, kustomizeStaging} {
		ents, err := os.ReadDir(dir)
		if !*update {
			require.NoError(t, err)
		}
		for _, e := range ents {
			p := path.Join(dir, e.Name())
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			if strings.HasPrefix(string(b), generatedHeader) {
				existing = append(existing, p)
			}
		}
	}
	if *update {
		for _, p := range existing {
			if _, ok := want[p]; !ok {
				require.NoError(t, os.Remove(p))
				t.Logf("removed stale %s", p)
			}
		}
		for p, body := range want {
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		}
		return
	}
	names := make([]string, 0, len(want))
	for p := range want {
		names = append(names, p)
	}
	sort.Strings(names)
	assert.ElementsMatch(t, names, existing, "generated files (run with -update)")
	for _, p := range names {
		b, err := os.ReadFile(p)
		if !assert.NoError(t, err) {
			continue
		}
		assert.Equal(t, want[p], string(b), "%s is stale: go test ./deploy -run TestKustomizeFilesMatchChart -update", p)
	}
}

func kustomizeBuild(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", dir)
	y, err := res.AsYaml()
	require.NoError(t, err)
	objs, err := decodeManifests(dir, y)
	require.NoError(t, err)
	return objs
}

func TestKustomizeBase(t *testing.T) {
	objs := kustomizeBuild(t, kustomizeBase)
	r := checkManifests(t, objs)
	ns := one[*corev1.Namespace](t, objs, releaseNS)
	assert.NotEqual(t, "enabled", ns.Labels[injectLabel], "egressguard's namespace is never injected")
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"], "egressguard's own pods meet the restricted Pod Security Standard")
	assert.Empty(t, egressPolicies(objs), "egress NetworkPolicies belong to the overlays")
	assert.Len(t, find[*cmCertificate](objs), 3, "the CA, webhook and xDS certificates come from cert-manager")
	assert.Empty(t, find[*corev1.Secret](objs), "no private key in the base: the staging CA key is the operator's Secret")
	assertEnvironments(t, r, "", nil)
	for _, o := range objs {
		l := objLabels(o)
		assert.Equal(t, "kustomize", l["app.kubernetes.io/managed-by"], "%s", o)
		assert.NotContains(t, l, "helm.sh/chart", "%s", o)
	}
}

func TestKustomizeStagingOverlay(t *testing.T) {
	objs := kustomizeBuild(t, kustomizeStaging)
	r := checkManifests(t, objs)
	assertEnvironments(t, r, "", []string{"staging"})

	staging := one[*corev1.Namespace](t, objs, "staging")
	assert.Equal(t, "staging", staging.Labels[environmentLabel])
	mwc := find[*admissionv1.MutatingWebhookConfiguration](objs)
	require.Len(t, mwc, 1)
	sel, err := metav1LabelSelectorAsSelector(mwc[0].Webhooks[0].NamespaceSelector)
	require.NoError(t, err)
	nsLabels := labels.Merge(staging.Labels, labels.Set{"kubernetes.io/metadata.name": staging.Name})
	assert.True(t, sel.Matches(nsLabels), "the webhook injects the staging namespace")

	nps := egressPolicies(objs)
	require.Len(t, nps, 1)
	assert.Equal(t, "staging", nps[0].Namespace)
	assertNoUDPBeyondDNS(t, nps[0])

	for _, img := range []string{r.cp.Spec.Template.Spec.Containers[0].Image, r.dg.Spec.Template.Spec.Containers[0].Image} {
		assert.Equal(t, "ghcr.io/egressguard/egressguard:0.1.0", img)
	}
	assert.True(t, slices.Contains(nps[0].Spec.PolicyTypes, networkingv1.PolicyTypeEgress))
}

func objLabels(o object) map[string]string {
	type labeled interface{ GetLabels() map[string]string }
	if l, ok := o.Obj.(labeled); ok {
		return l.GetLabels()
	}
	return nil
}

// TestKustomizationListsEveryFile: a file added to a kustomize directory
// but not to its kustomization.yaml would silently not be deployed.
func TestKustomizationListsEveryFile(t *testing.T) {
	for _, dir := range []string{kustomizeBase, kustomizeStaging} {
		b, err := os.ReadFile(path.Join(dir, "kustomization.yaml"))
		require.NoError(t, err)
		var k struct {
			Resources []string `json:"resources"`
			Patches   []struct {
				Path string `json:"path"`
			} `json:"patches"`
		}
		require.NoError(t, sigsyaml.Unmarshal(b, &k))
		listed := slices.Clone(k.Resources)
		for _, p := range k.Patches {
			listed = append(listed, p.Path)
		}
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range ents {
			if e.IsDir() || e.Name() == "kustomization.yaml" {
				continue
			}
			assert.Contains(t, listed, e.Name(), "%s/kustomization.yaml lists %s", dir, e.Name())
		}
	}
}
