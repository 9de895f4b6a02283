package capture

import (
	"fmt"
	"io/fs"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Fixed inode numbers of the kernel's initial namespaces
// (include/uapi/linux/nsfs.h). The initial PID namespace has had its fixed
// number since Linux 3.8; the initial network namespace only since 6.18
// (before, it was numbered like any other).
const (
	initPIDNamespaceInode = 0xEFFFFFFC
	initNetNamespaceInode = 0xEFFFFFF9
)

// Namespace is what HostNetwork looks at, replaceable in tests.
type Namespace struct {
	// Inode returns the inode and device of a /proc/PID/ns/ file
	// (os.ErrPermission or fs.ErrNotExist when it cannot be read).
	Inode func(path string) (ino, dev uint64, err error)
	// Links lists the network interfaces of the current network namespace.
	Links func() ([]Link, error)
}

// Link is one network interface: its name and its rtnetlink kind ("" for
// a device driven by hardware or a paravirtual NIC, "veth", "bridge", ...).
type Link struct {
	Name, Kind string
	Loopback   bool
}

// SystemNamespace reads /proc and asks the kernel over rtnetlink.
func SystemNamespace() Namespace {
	return Namespace{Inode: nsInode, Links: netlinkLinks}
}

// HostNetwork reports why the current network namespace looks like a
// host's rather than a pod's, or "" when it does not. The capture rules
// redirect every outbound TCP connection of the namespace: in a pod that is
// the point, on a node or a workstation it cuts the machine off.
//
// Three checks, the first conclusive one wins:
//  1. the namespace is the kernel's initial network namespace by its fixed
//     inode (Linux 6.18 and later);
//  2. this process runs in the initial PID namespace (a shell on the host,
//     not a container) and shares PID 1's network namespace, i.e. the init
//     system's;
//  3. an interface other than lo is a hardware or paravirtual NIC (no
//     rtnetlink kind) or a bridge: a pod's interfaces are veth, ipvlan,
//     macvlan or tunnel devices, a node's are its NICs and the bridges its
//     container runtime created. A pod with a passed-through NIC (SR-IOV,
//     VM-isolated runtimes) trips this check and must be forced.
func HostNetwork(ns Namespace) (string, error) {
	if ino, _, err := ns.Inode("/proc/self/ns/net"); err == nil && ino == initNetNamespaceInode {
		return "this is the kernel's initial network namespace (the host's)", nil
	}
	pid, _, pidErr := ns.Inode("/proc/self/ns/pid")
	selfNet, selfDev, netErr := ns.Inode("/proc/self/ns/net")
	if pidErr == nil && netErr == nil && pid == initPIDNamespaceInode {
		initNet, initDev, err := ns.Inode("/proc/1/ns/net")
		if err == nil && initNet == selfNet && initDev == selfDev {
			return "this process runs on the host (initial PID namespace) in the network namespace of PID 1, the init system", nil
		}
	}
	links, err := ns.Links()
	if err != nil {
		return "", fmt.Errorf("capture: list network interfaces: %w", err)
	}
	for _, l := range links {
		switch {
		case l.Loopback:
		case l.Kind == "":
			return fmt.Sprintf("interface %s is a hardware or paravirtual NIC, which a pod's network namespace does not have", l.Name), nil
		case l.Kind == "bridge":
			return fmt.Sprintf("interface %s is a bridge, as on a node whose container runtime attaches pods to it", l.Name), nil
		}
	}
	return "", nil
}

func nsInode(path string) (uint64, uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return uint64(st.Ino), uint64(st.Dev), nil // Dev is 32 bits on some systems
}

func netlinkLinks() ([]Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		kind := l.Type()
		if _, ok := l.(*netlink.Device); ok {
			kind = "" // no IFLA_INFO_KIND: a driver-backed device (or lo)
		}
		out = append(out, Link{Name: a.Name, Kind: kind, Loopback: a.Flags&net.FlagLoopback != 0})
	}
	return out, nil
}
