package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

// kubeClient is the API client of inventory.kubernetes (the inventory's
// informers and the node identity guard's TokenReviews). It does not
// contact the API server.
func kubeClient(k kubeSection) (kubernetes.Interface, error) {
	if k.client != nil {
		return k.client, nil
	}
	rc, err := kubeRESTConfig(k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("inventory.kubernetes: %w", err)
	}
	rc.UserAgent = "egressguard/" + version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("inventory.kubernetes: %w", err)
	}
	return client, nil
}

// newKubeSource builds the Kubernetes inventory source of inventory.source
// kubernetes on client. It does not contact the API server: that happens
// in Run.
func newKubeSource(client kubernetes.Interface, k kubeSection, log *zap.Logger, reg prometheus.Registerer) *kube.Source {
	return kube.New(client, log, kube.Options{
		DefaultEnvironment: k.DefaultEnvironment,
		ClusterDomain:      k.ClusterDomain,
		SyncTimeout:        k.SyncTimeout,
		NodeName:           k.NodeName,
		Metrics:            kube.NewMetrics(reg),
	})
}

// kubeRESTConfig is the kubeconfig file when one is named, else the pod's
// service account, else $KUBECONFIG or ~/.kube/config (running outside a
// cluster, e.g. against kind).
func kubeRESTConfig(path string) (*rest.Config, error) {
	if path != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err == nil {
		return rc, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster (KUBERNETES_SERVICE_HOST is unset) and no usable kubeconfig "+
			"($KUBECONFIG=%q, ~/.kube/config): set inventory.kubernetes.kubeconfig or --kubeconfig: %w",
			os.Getenv("KUBECONFIG"), err)
	}
	return rc, nil
}

// newIdentityGuard builds the xDS node identity guard of xds.identity (nil
// when its mode is off). Tokens are reviewed by client's API server; with
// no client (inventory not from Kubernetes) only peer addresses can prove
// an identity.
func newIdentityGuard(c nodeauth.Config, inv inventory.Source, client kubernetes.Interface, log *zap.Logger, reg prometheus.Registerer) (*nodeauth.Guard, error) {
	if !c.Enabled() {
		return nil, nil
	}
	var rev nodeauth.Reviewer
	if client != nil {
		rev = nodeauth.NewTokenReviewer(client, c.Audience)
	}
	g, err := nodeauth.New(c, inv, rev, log, reg)
	if err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	return g, nil
}
