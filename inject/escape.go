package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// runtimeDefaultCaps is the capability set a container runtime grants a
// container that drops nothing: containerd's default (pkg/oci/spec.go,
// defaultUnixCaps), a superset of CRI-O's default_capabilities. A
// container whose securityContext does not drop a capability is assumed to
// hold it.
var runtimeDefaultCaps = []string{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// escapeCaps are the capabilities that let a process leave traffic
// capture: SETUID/SETGID to become the proxy's UID (whose traffic the
// capture rules exempt), NET_ADMIN to rewrite the capture rules, NET_RAW
// to send packets on a raw or packet socket.
var escapeCaps = []string{"NET_ADMIN", "NET_RAW", "SETGID", "SETUID"}

// captureEscapes lists, for every container of the pod other than ours,
// how it could leave traffic capture, each with the fix; none for a pod
// that cannot.
//
// A container can leave capture when it runs as the proxy's UID, is
// privileged, or could hold one of escapeCaps: it may run as root (its
// UID is 0, or unknown without runAsNonRoot: the image decides) or may
// gain privileges (allowPrivilegeEscalation not false: setuid binaries and
// file capabilities), and its capability set (the runtime's default unless
// it drops ALL, minus its drops, plus its adds) has one of them.
func (i *Injector) captureEscapes(pod *corev1.Pod) []string {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	var out []string
	if psc.RunAsUser != nil && *psc.RunAsUser == i.cfg.ProxyUID {
		out = append(out, fmt.Sprintf("spec.securityContext.runAsUser is %d, the egressguard sidecar's UID, whose traffic is not captured: run the pod as another UID", i.cfg.ProxyUID))
	}
	for _, f := range []struct {
		field string
		list  []corev1.Container
	}{{"spec.initContainers", pod.Spec.InitContainers}, {"spec.containers", pod.Spec.Containers}} {
		for _, c := range f.list {
			if c.Name == ProxyContainerName || c.Name == InitContainerName {
				continue
			}
			if why := i.containerEscape(c, psc); why != "" {
				out = append(out, fmt.Sprintf("%s[%s]: %s", f.field, c.Name, why))
			}
		}
	}
	return out
}

func (i *Injector) containerEscape(c corev1.Container, psc *corev1.PodSecurityContext) string {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if sc.Privileged != nil && *sc.Privileged {
		return "is privileged, so it can rewrite the capture rules: set securityContext.privileged: false"
	}
	uid := cmpOr(sc.RunAsUser, psc.RunAsUser)
	if uid != nil && *uid == i.cfg.ProxyUID {
		return fmt.Sprintf("runs as UID %d, the egressguard sidecar's, whose traffic is not captured: set securityContext.runAsUser to another UID", i.cfg.ProxyUID)
	}
	nonRoot := cmpOr(sc.RunAsNonRoot, psc.RunAsNonRoot)
	mayRoot := (uid != nil && *uid == 0) || (uid == nil && (nonRoot == nil || !*nonRoot))
	mayEscalate := sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation
	if !mayRoot && !mayEscalate {
		return ""
	}
	caps := effectiveCaps(sc.Capabilities)
	var held []string
	for _, cp := range escapeCaps {
		if slices.Contains(caps, cp) {
			held = append(held, cp)
		}
	}
	if len(held) == 0 {
		return ""
	}
	var who []string
	if mayRoot {
		if uid == nil {
			who = append(who, "may run as root (no runAsUser, runAsNonRoot not set: the image decides)")
		} else {
			who = append(who, "runs as root")
		}
	}
	if mayEscalate {
		who = append(who, "may gain privileges (allowPrivilegeEscalation is not false)")
	}
	return fmt.Sprintf("%s and holds %s, so it could switch to the sidecar's UID %d or bypass the capture rules: "+
		"set securityContext.capabilities.drop: [ALL] (add back only what it needs, never SETUID, SETGID, NET_RAW or NET_ADMIN), "+
		"or runAsNonRoot: true with a runAsUser other than %d and allowPrivilegeEscalation: false",
		strings.Join(who, " and "), strings.Join(held, ", "), i.cfg.ProxyUID, i.cfg.ProxyUID)
}

// effectiveCaps is a container's capability set, names normalised (upper
// case, no CAP_ prefix), sorted, composed as containerd's CRI plugin does
// (WithCapabilities; CRI-O's setupCapabilities likewise): the runtime's
// default set, every capability when add lists ALL, none when drop lists
// ALL, then the individual adds, then the individual drops.
func effectiveCaps(c *corev1.Capabilities) []string {
	norm := func(cp corev1.Capability) string {
		return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(string(cp))), "CAP_")
	}
	if c == nil {
		return runtimeDefaultCaps
	}
	var add, drop []string
	for _, a := range c.Add {
		add = append(add, norm(a))
	}
	for _, d := range c.Drop {
		drop = append(drop, norm(d))
	}
	set := slices.Clone(runtimeDefaultCaps)
	if slices.Contains(add, "ALL") {
		set = append(set, escapeCaps...) // every capability, as far as capture goes
	}
	if slices.Contains(drop, "ALL") {
		set = nil
	}
	for _, a := range add {
		if a != "ALL" {
			set = append(set, a)
		}
	}
	set = slices.DeleteFunc(set, func(cp string) bool { return slices.Contains(drop, cp) })
	slices.Sort(set)
	return slices.Compact(set)
}

func cmpOr[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}
