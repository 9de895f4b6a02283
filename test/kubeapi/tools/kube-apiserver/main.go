// Command kube-apiserver is the upstream Kubernetes API server, built from
// pinned modules so integration tests can run it without a container runtime.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
