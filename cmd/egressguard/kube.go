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

	"github.com/egressguard/egressguard/inventory/kube"
)

// newKubeSource builds the Kubernetes inventory source of inventory.source
// kubernetes. It does not contact the API server: that happens in Run.
func newKubeSource(k kubeSection, log *zap.Logger, reg prometheus.Registerer) (*kube.Source, error) {
	client := k.client
	if client == nil {
		rc, err := kubeRESTConfig(k.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("inventory.kubernetes: %w", err)
		}
		rc.UserAgent = "egressguard/" + version
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("inventory.kubernetes: %w", err)
		}
	}
	return kube.New(client, log, kube.Options{
		DefaultEnvironment: k.DefaultEnvironment,
		ClusterDomain:      k.ClusterDomain,
		SyncTimeout:        k.SyncTimeout,
		NodeName:           k.NodeName,
		Metrics:            kube.NewMetrics(reg),
	}), nil
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
