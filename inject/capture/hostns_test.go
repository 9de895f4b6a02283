package capture

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeNamespace answers inode lookups from a map (missing: not exist).
func fakeNamespace(inodes map[string][2]uint64, links ...Link) Namespace {
	return Namespace{
		Inode: func(p string) (uint64, uint64, error) {
			v, ok := inodes[p]
			if !ok {
				return 0, 0, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrPermission}
			}
			return v[0], v[1], nil
		},
		Links: func() ([]Link, error) { return links, nil },
	}
}

func TestHostNetwork(t *testing.T) {
	lo := Link{Name: "lo", Loopback: true}
	veth := Link{Name: "eth0", Kind: "veth"}
	cases := []struct {
		name   string
		ns     Namespace
		reason string // substring; "" means "a pod's"
	}{
		{"initial netns by its fixed inode (Linux 6.18+)",
			fakeNamespace(map[string][2]uint64{"/proc/self/ns/net": {initNetNamespaceInode, 4}}, lo, veth),
			"kernel's initial network namespace"},
		{"a shell on the host shares PID 1's netns",
			fakeNamespace(map[string][2]uint64{"/proc/self/ns/pid": {initPIDNamespaceInode, 4}, "/proc/self/ns/net": {4026531840, 4}, "/proc/1/ns/net": {4026531840, 4}}, lo, veth),
			"network namespace of PID 1"},
		{"host PID namespace but its own netns (ip netns exec)",
			fakeNamespace(map[string][2]uint64{"/proc/self/ns/pid": {initPIDNamespaceInode, 4}, "/proc/self/ns/net": {4026532500, 4}, "/proc/1/ns/net": {4026531840, 4}}, lo, veth),
			""},
		{"a container whose PID 1 shares its netns: decided by the interfaces",
			fakeNamespace(map[string][2]uint64{"/proc/self/ns/pid": {4026532600, 4}, "/proc/self/ns/net": {4026532500, 4}, "/proc/1/ns/net": {4026532500, 4}}, lo, veth),
			""},
		{"a physical or virtio NIC", fakeNamespace(nil, lo, Link{Name: "ens5"}), "ens5 is a hardware or paravirtual NIC"},
		{"a bridge", fakeNamespace(nil, lo, veth, Link{Name: "cni0", Kind: "bridge"}), "cni0 is a bridge"},
		{"a pod: lo and a veth", fakeNamespace(nil, lo, veth), ""},
		{"a pod on ipvlan", fakeNamespace(nil, lo, Link{Name: "eth0", Kind: "ipvlan"}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reason, err := HostNetwork(tc.ns)
			require.NoError(t, err)
			if tc.reason == "" {
				assert.Empty(t, reason)
			} else {
				assert.Contains(t, reason, tc.reason)
			}
		})
	}

	_, err := HostNetwork(Namespace{
		Inode: fakeNamespace(nil).Inode,
		Links: func() ([]Link, error) { return nil, errors.New("netlink: operation not permitted") },
	})
	require.ErrorContains(t, err, "list network interfaces: netlink: operation not permitted")
}

func TestRenderCleanup(t *testing.T) {
	assert.Empty(t, renderCleanup([]byte("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -j KEEP\nCOMMIT\n")), "nothing of egressguard's: nothing to do")
	// A hook in another table is not ours to remove.
	assert.Empty(t, renderCleanup([]byte("*filter\n-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\nCOMMIT\n")))

	save := "*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:OUTPUT ACCEPT [3:180]\n:EGRESSGUARD_OUTPUT - [0:0]\n:EGRESSGUARD_REDIRECT - [0:0]\n:KEEP - [0:0]\n" +
		"-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n-A OUTPUT -p udp -j KEEP\n-A OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n-A EGRESSGUARD_OUTPUT -j EGRESSGUARD_REDIRECT\nCOMMIT\n"
	assert.Equal(t, "# egressguard: remove the traffic capture rules\n*nat\n"+
		":EGRESSGUARD_OUTPUT - [0:0]\n:EGRESSGUARD_REDIRECT - [0:0]\n"+
		"-D OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n-D OUTPUT -p tcp -j EGRESSGUARD_OUTPUT\n"+
		"-X EGRESSGUARD_OUTPUT\n-X EGRESSGUARD_REDIRECT\nCOMMIT\n", renderCleanup([]byte(save)))
}
