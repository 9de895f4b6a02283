package kubeapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inventory/kube"
)

// applyKustomize applies the kustomization in dir server-side as a dry run
// (the API server validates and admits every object, nothing is stored:
// the chart's install owns the same names). It returns the kinds the
// server does not serve.
func applyKustomize(ctx context.Context, t *testing.T, c *cluster, dir string) []string {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err)
	dyn, err := dynamic.NewForConfig(c.rest)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.client.Discovery()))
	var unserved []string
	for _, r := range res.Resources() {
		m, err := r.Map()
		require.NoError(t, err)
		obj := &unstructured.Unstructured{Object: m}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			unserved = append(unserved, gvk.String())
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		_, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "egressguard-kustomize-test", Force: true, DryRun: []string{metav1.DryRunAll}})
		assert.NoError(t, err, "%s %s/%s", gvk.Kind, obj.GetNamespace(), obj.GetName())
	}
	return unserved
}

func checkKustomize(ctx context.Context, t *testing.T, c *cluster) {
	// The overlay's NetworkPolicy goes into staging; a dry run does not
	// create the overlay's Namespace, so it is created here as the docs
	// have operators do.
	mkNamespace(ctx, t, c.client, "staging", map[string]string{inject.NamespaceLabel: "enabled", kube.EnvironmentLabel: "staging"})
	for _, dir := range []string{"../../deploy/kustomize/base", "../../deploy/kustomize/overlays/staging"} {
		unserved := applyKustomize(ctx, t, c, dir)
		// The base needs cert-manager (docs/kubernetes.md); this server
		// has no CRDs.
		for _, k := range unserved {
			assert.Contains(t, k, "cert-manager.io/", "%s: only cert-manager's kinds are not served here", dir)
		}
	}
}
