// Package kubeapi holds the integration tests that run egressguard's
// Kubernetes parts against a real kube-apiserver and etcd, built from the
// pinned modules in tools/ (kept out of the main module) and started on
// loopback. The package has no code outside its tests.
package kubeapi
