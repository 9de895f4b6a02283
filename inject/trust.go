package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

// trustVolumeSize bounds the bundle's emptyDir (in memory): a system bundle
// is about 200 KiB.
var trustVolumeSize = resource.MustParse("2Mi")

// AnnotationTrustStagingCA opts a pod out of the staging CA's trust bundle
// when its value is "false": its containers keep the image's own roots, and
// a TLS connection the sidecar intercepts then fails the client's
// certificate check (fail closed, no worse than a deny).
const AnnotationTrustStagingCA = "egressguard.io/trust-staging-ca"

// The trust bundle: TrustContainerName (egressguard's image, `egressguard
// trust-bundle`) writes the image's system roots plus the staging CA's
// anchors into an emptyDir; application containers get the bundle mounted
// over the usual system paths and named by the usual variables.
const (
	TrustContainerName = "egressguard-trust"
	trustVolumeName    = "egressguard-trust"
	// TrustDir is where the bundle files are mounted in application
	// containers (and written by the init container).
	TrustDir = "/var/run/egressguard/trust"
	// TrustBundleFile is the system roots plus the anchors; TrustAnchorsFile
	// the anchors alone (NODE_EXTRA_CA_CERTS adds to Node's own roots).
	TrustBundleFile  = "ca-bundle.crt"
	TrustAnchorsFile = "staging-ca.crt"
	// EnvTrustAnchors carries the anchors (PEM) to the init container.
	EnvTrustAnchors = "EGRESSGUARD_TRUST_ANCHORS"
)

// trustSystemPaths are where common images keep their system bundle; the
// trust bundle is mounted over each (subPath, read-only): Debian, Ubuntu,
// Alpine and distroless at the first, RHEL, Fedora and UBI at the second.
var trustSystemPaths = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}

// trustEnv are the variables that point common TLS stacks at the bundle
// (OpenSSL, Go: SSL_CERT_FILE; Python requests; curl) and Node at the
// anchors. Java keeps its own truststore: see docs/kubernetes.md.
func trustEnv() []corev1.EnvVar {
	bundle, anchors := TrustDir+"/"+TrustBundleFile, TrustDir+"/"+TrustAnchorsFile
	return []corev1.EnvVar{
		{Name: "SSL_CERT_FILE", Value: bundle},
		{Name: "REQUESTS_CA_BUNDLE", Value: bundle},
		{Name: "CURL_CA_BUNDLE", Value: bundle},
		{Name: "NODE_EXTRA_CA_CERTS", Value: anchors},
	}
}

// trustMounts are the mounts of the bundle in an application container.
func trustMounts() []corev1.VolumeMount {
	ms := []corev1.VolumeMount{{Name: trustVolumeName, MountPath: TrustDir, ReadOnly: true}}
	for _, p := range trustSystemPaths {
		ms = append(ms, corev1.VolumeMount{Name: trustVolumeName, MountPath: p, SubPath: TrustBundleFile, ReadOnly: true})
	}
	return ms
}

// TrustBundleArgs are the arguments of `egressguard` in the trust
// container.
func TrustBundleArgs() []string {
	return []string{"trust-bundle", "--anchors-env", EnvTrustAnchors,
		"--out", TrustDir + "/" + TrustBundleFile, "--anchors-out", TrustDir + "/" + TrustAnchorsFile}
}

// trustUID is the trust container's UID: not root, and not the proxy's
// (whose traffic is not captured), so the container passes the same escape
// checks as any application container.
func (i *Injector) trustUID() int64 {
	if i.cfg.ProxyUID == 65534 {
		return 65533
	}
	return 65534
}

func (i *Injector) trustContainer(anchors []byte, guaranteed bool) corev1.Container {
	uid := i.trustUID()
	return corev1.Container{
		Name:    TrustContainerName,
		Image:   i.cfg.InitImage,
		Command: []string{"egressguard"},
		Args:    TrustBundleArgs(),
		Env:     []corev1.EnvVar{{Name: EnvTrustAnchors, Value: string(anchors)}},
		Resources: requirements(corev1.ResourceList{
			corev1.ResourceCPU:    initCPU,
			corev1.ResourceMemory: initMemory,
		}, guaranteed),
		VolumeMounts:             []corev1.VolumeMount{{Name: trustVolumeName, MountPath: TrustDir}},
		ImagePullPolicy:          corev1.PullIfNotPresent,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// It only writes two files into the emptyDir: no privilege at all.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			RunAsNonRoot:             ptr(true),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// trustAnchors returns the staging CA's anchors to install in pod, or nil:
// none without a staging CA, none for a pod opted out.
func (i *Injector) trustAnchors(pod *corev1.Pod) []byte {
	if i.anchors == nil || strings.EqualFold(strings.TrimSpace(pod.Annotations[AnnotationTrustStagingCA]), "false") {
		return nil
	}
	return i.anchors()
}

// prepareTrust installs the trust bundle in pod: the trust container right
// after egressguard-init (before any other init container, which may make
// TLS calls), its emptyDir, and in every application container the mounts
// and variables. Ours replace a container, volume, mount or variable of the
// same name or path (noted). It is idempotent: applied to its own result it
// changes nothing, which is how provenInjected proves it.
func (i *Injector) prepareTrust(pod *corev1.Pod, guaranteed bool) []string {
	anchors := i.trustAnchors(pod)
	if len(anchors) == 0 {
		return nil
	}
	var notes []string
	trust := i.trustContainer(anchors, guaranteed)
	if k := indexOf(pod.Spec.InitContainers, TrustContainerName); k >= 0 {
		pod.Spec.InitContainers = slices.Delete(pod.Spec.InitContainers, k, k+1)
	}
	at := indexOf(pod.Spec.InitContainers, InitContainerName) + 1
	pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, at, trust)
	vol := corev1.Volume{Name: trustVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: ptr(trustVolumeSize)}}}
	notes = append(notes, setVolume(pod, vol)...)
	for c := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[c]
		if ctr.Name == ProxyContainerName {
			continue
		}
		notes = append(notes, setEnv(ctr, trustEnv(), "the staging CA trust bundle")...)
		notes = append(notes, setMounts(ctr, trustMounts())...)
	}
	return notes
}

// setVolume puts vol into pod, replacing one of the same name.
func setVolume(pod *corev1.Pod, vol corev1.Volume) []string {
	var notes []string
	if k := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol.Name }); k >= 0 {
		pod.Spec.Volumes = slices.Delete(pod.Spec.Volumes, k, k+1)
		notes = append(notes, "replaced existing volume "+vol.Name)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, vol)
	return notes
}

// setEnv appends ours to ctr's environment, dropping variables of the same
// names first (each noted unless it was already ours, i.e. identical).
func setEnv(ctr *corev1.Container, ours []corev1.EnvVar, what string) []string {
	var notes []string
	kept := ctr.Env[:0:0]
	for _, e := range ctr.Env {
		k := slices.IndexFunc(ours, func(o corev1.EnvVar) bool { return o.Name == e.Name })
		if k < 0 {
			kept = append(kept, e)
			continue
		}
		if e.Value != ours[k].Value || e.ValueFrom != nil {
			notes = append(notes, fmt.Sprintf("container %s: replaced %s with egressguard's %s", ctr.Name, e.Name, what))
		}
	}
	ctr.Env = append(kept, ours...)
	return notes
}

// setMounts appends ours to ctr's volume mounts, dropping mounts at the same
// paths first (the API server refuses two mounts at one path).
func setMounts(ctr *corev1.Container, ours []corev1.VolumeMount) []string {
	var notes []string
	kept := ctr.VolumeMounts[:0:0]
	for _, m := range ctr.VolumeMounts {
		k := slices.IndexFunc(ours, func(o corev1.VolumeMount) bool { return o.MountPath == m.MountPath })
		if k < 0 {
			kept = append(kept, m)
			continue
		}
		if !apiequality.Semantic.DeepEqual(m, ours[k]) {
			notes = append(notes, fmt.Sprintf("container %s: replaced the mount at %s (volume %s) with egressguard's", ctr.Name, m.MountPath, m.Name))
		}
	}
	ctr.VolumeMounts = append(kept, ours...)
	return notes
}
