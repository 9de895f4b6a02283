// Command etcd is the upstream etcd server, built from pinned modules so
// integration tests can run it next to kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
