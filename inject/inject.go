package inject

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Skip reasons: why a pod was admitted without injection. They are the
// values of the reason label of the skipped metric.
const (
	SkipHostNetwork     = "host_network"
	SkipOptedOut        = "opted_out"
	SkipAlreadyInjected = "already_injected"
	SkipNotPod          = "not_a_pod"
	SkipOperation       = "not_create"
)

// Limits of the API server's validation of dnsConfig (MaxDNSSearchPaths,
// MaxDNSSearchListChars): a pod beyond them would be rejected after
// injection, so the webhook refuses it with a clearer message.
const (
	maxDNSSearches    = 32
	maxDNSSearchChars = 2048
)

// Resources of the init container: iptables-restore and one Go process.
// The requests count towards the pod's scheduling only as the maximum over
// init containers, so they are kept small but not so small that the CPU
// quota of a Guaranteed pod (limits = requests) starves the start-up.
var (
	initCPU    = resource.MustParse("100m")
	initMemory = resource.MustParse("64Mi")
)

// Decision says what Inject did.
type Decision struct {
	// Injected is true when the sidecar, init container and DNS config
	// were added.
	Injected bool
	// Reason is one of the Skip* constants when Injected is false.
	Reason string
	// Notes are the edge cases met on the way (a replaced container of
	// ours, DNS settings that could not be kept), for the log.
	Notes []string
	// WouldDeny lists, in report mode, why enforce mode would have
	// refused the pod, each with how to fix it.
	WouldDeny []string
	// Audit are annotations for the API server's audit log: the opt-outs
	// the pod used.
	Audit map[string]string
}

// RefusedError is returned by Inject for pods that must not be admitted as
// they are: injecting them would either let them bypass the sidecar or
// produce a pod the API server rejects. The handler answers it with a
// denial carrying Error(), whatever the webhook's failurePolicy.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "egressguard: pod refused: " + e.Reason }

// Injector mutates pods. It renders the sidecar bootstrap once; Inject is
// pure and safe for concurrent use.
type Injector struct {
	cfg       Config
	bootstrap string
	sidecar   corev1.ResourceList
	xdsCA     []byte        // PEM of cfg.XDSCAFile; nil: plaintext xDS
	anchors   func() []byte // the staging CA's anchors; nil: none
}

// Option changes an Injector.
type Option func(*Injector)

// WithStagingCA makes injected pods trust the staging CA whose anchors
// (PEM) anchors returns at each admission (serve wires
// stagingca.Authority.AnchorsPEM): see prepareTrust. A pod admitted while
// it returns nothing gets no trust bundle.
func WithStagingCA(anchors func() []byte) Option {
	return func(i *Injector) { i.anchors = anchors }
}

// NewInjector checks cfg (Validate, plus the fields injection needs even
// when the webhook is not served: dns_server and init_image), reads the
// xDS CA and renders the sidecar bootstrap.
func NewInjector(cfg Config, opts ...Option) (*Injector, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !cfg.Enabled() {
		if cfg.DNSServer == "" {
			errs = append(errs, errors.New("webhook.dns_server: required to inject pods"))
		}
		if cfg.InitImage == "" {
			errs = append(errs, errors.New("webhook.init_image: required to inject pods"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("inject: config: %w", err)
	}
	var ca []byte
	if cfg.XDSCAFile != "" {
		var err error
		if ca, err = readCA(cfg.XDSCAFile); err != nil {
			return nil, fmt.Errorf("inject: config: webhook.xds_ca_file: %w", err)
		}
	}
	b, err := SidecarBootstrap(cfg, ca)
	if err != nil {
		return nil, err
	}
	i := &Injector{
		cfg:       cfg,
		bootstrap: b,
		xdsCA:     ca,
		sidecar: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cfg.SidecarCPU),
			corev1.ResourceMemory: resource.MustParse(cfg.SidecarMemory),
		},
	}
	for _, o := range opts {
		o(i)
	}
	return i, nil
}

// AnnotationHostNetworkOptOut admits a host-network pod (which no sidecar
// or NetworkPolicy can govern) into an enforced namespace. Its value must
// say why (a ticket, an owner); the webhook copies it into the API
// server's audit log (auditAnnotations) and warns the client.
const AnnotationHostNetworkOptOut = "egressguard.io/host-network-opt-out"

// Audit annotation keys the webhook sets on admission responses (the API
// server prefixes them with the webhook's name in the audit log).
const (
	AuditHostNetworkOptOut = "host-network-opt-out"
	AuditOptedOut          = "opted-out"
	AuditWouldDeny         = "would-deny"
)

// Inject returns the pod to admit and what was done. The input is never
// written: the result is a deep copy (or pod itself when nothing changes).
// namespace is the admission request's; it is used when the pod's own
// metadata.namespace is empty, as it often is at admission.
//
// Every pod reaching the webhook is in an enforced namespace (the
// namespaceSelector). In order:
//
//   - a host-network pod is refused (RefusedError), since no sidecar,
//     capture rule or NetworkPolicy applies to it, unless it carries
//     AnnotationHostNetworkOptOut with a reason (admitted unchanged,
//     audited); in report mode it is admitted with a would-deny;
//   - a pod opted out with egressguard.io/inject: "false" ("disabled",
//     "no") is admitted unchanged, audited;
//   - a container that could leave traffic capture (captureEscapes) gets
//     the pod refused, with how to fix its spec; in report mode the pod is
//     injected and each finding recorded as a would-deny;
//   - a pod marked injected is left as it is only when the injection is
//     proven (provenInjected: our containers exactly as this webhook would
//     write them, dnsguard as its only nameserver); the one change made
//     then is moving egressguard-init back to the front of the init
//     containers when another webhook (reinvocationPolicy IfNeeded) put
//     one before it. Otherwise it is injected again, so injecting twice
//     changes nothing and a claimed injection changes everything.
func (i *Injector) Inject(pod *corev1.Pod, namespace string) (*corev1.Pod, Decision, error) {
	if pod == nil {
		return nil, Decision{}, errors.New("inject: nil pod")
	}
	enforce := i.cfg.Mode != ModeReport
	if pod.Spec.HostNetwork {
		if why := strings.TrimSpace(pod.Annotations[AnnotationHostNetworkOptOut]); why != "" {
			return pod, Decision{Reason: SkipHostNetwork, Audit: map[string]string{AuditHostNetworkOptOut: why},
				Notes: []string{"host network admitted by " + AnnotationHostNetworkOptOut + ": " + why}}, nil
		}
		msg := "spec.hostNetwork: a host-network pod bypasses the egressguard sidecar, its traffic capture and NetworkPolicy: " +
			"set hostNetwork: false, or, where the pod must use the node's network, annotate it " +
			AnnotationHostNetworkOptOut + `: "<ticket and reason>" (an audited exception)`
		if enforce {
			return nil, Decision{}, &RefusedError{Reason: msg}
		}
		return pod, Decision{Reason: SkipHostNetwork, WouldDeny: []string{msg}}, nil
	}
	if v := pod.Annotations[AnnotationInject]; optedOut(v) {
		return pod, Decision{Reason: SkipOptedOut, Audit: map[string]string{AuditOptedOut: AnnotationInject + "=" + v}}, nil
	}
	var d Decision
	if escapes := i.captureEscapes(pod); len(escapes) > 0 {
		if enforce {
			return nil, Decision{}, &RefusedError{Reason: strings.Join(escapes, "; ")}
		}
		d.WouldDeny = escapes
	}
	if _, marked := pod.Annotations[AnnotationInjected]; marked {
		if j, ok := i.provenInjected(pod); ok {
			d.Reason = SkipAlreadyInjected
			if j == 0 {
				return pod, d, nil
			}
			out := pod.DeepCopy()
			c := out.Spec.InitContainers[j]
			out.Spec.InitContainers = slices.Insert(slices.Delete(out.Spec.InitContainers, j, j+1), 0, c)
			d.Notes = append(d.Notes, fmt.Sprintf("moved %s from init container %d back to the front", InitContainerName, j))
			return out, d, nil
		}
		d.Notes = append(d.Notes, "marked "+AnnotationInjected+" but its containers or DNS differ from what this webhook writes: injected again")
	}

	ns := pod.Namespace
	if ns == "" {
		ns = namespace
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, Decision{}, fmt.Errorf("inject: namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	out := pod.DeepCopy()
	d.Injected = true
	// A container of ours without the full injection (a copied manifest, a
	// half-edited pod) is replaced, so the pod gets this webhook's current
	// configuration and not whatever the manifest says.
	for _, list := range []*[]corev1.Container{&out.Spec.Containers, &out.Spec.InitContainers} {
		*list = slices.DeleteFunc(*list, func(c corev1.Container) bool {
			if c.Name == ProxyContainerName || c.Name == InitContainerName || c.Name == TrustContainerName {
				d.Notes = append(d.Notes, "replaced existing container "+c.Name)
				return true
			}
			return false
		})
	}
	guaranteed := isGuaranteed(out)

	// Order matters: egressguard-init goes FIRST. Init containers run one
	// after another in order, and traffic capture must be in place before
	// any other init container (a migration job, a secrets fetcher, a
	// native sidecar with restartPolicy Always) talks to the network, or
	// that traffic would leave the pod unchecked.
	out.Spec.InitContainers = slices.Insert(out.Spec.InitContainers, 0, i.initContainer(guaranteed))
	// The sidecar goes last, so the application stays the pod's first
	// container (kubectl logs/exec default to it).
	out.Spec.Containers = append(out.Spec.Containers, i.proxyContainer(guaranteed))
	grpcNotes, err := i.prepareProxyless(out)
	if err != nil {
		return nil, Decision{}, err
	}
	d.Notes = append(d.Notes, grpcNotes...)
	d.Notes = append(d.Notes, i.prepareTrust(out, guaranteed)...)

	dns, notes, err := i.dnsConfig(out, ns)
	if err != nil {
		return nil, Decision{}, err
	}
	d.Notes = append(d.Notes, notes...)
	out.Spec.DNSPolicy = corev1.DNSNone
	out.Spec.DNSConfig = dns

	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationInjected] = i.cfg.SidecarImage
	return out, d, nil
}

// optedOut reports whether the opt-out annotation's value opts out.
func optedOut(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "disabled", "no":
		return true
	}
	return false
}

func indexOf(cs []corev1.Container, name string) int {
	return slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

// provenInjected reports whether pod carries this webhook's injection
// exactly: egressguard-init and egressguard-proxy as it would write them
// (image, command, arguments, environment, security context: UID,
// capabilities), dnsguard as the only nameserver of a dnsPolicy None pod,
// and the application containers' part (the proxyless gRPC bootstrap and
// credentials, the trust bundle's init container, volume, mounts and
// variables) already in place: applying it again changes nothing. It
// returns egressguard-init's index.
func (i *Injector) provenInjected(pod *corev1.Pod) (int, bool) {
	j := indexOf(pod.Spec.InitContainers, InitContainerName)
	k := indexOf(pod.Spec.Containers, ProxyContainerName)
	if j < 0 || k < 0 || pod.Spec.DNSPolicy != corev1.DNSNone || pod.Spec.DNSConfig == nil ||
		!slices.Equal(pod.Spec.DNSConfig.Nameservers, []string{i.cfg.DNSServer}) {
		return j, false
	}
	// Our containers were added to a pod whose QoS class they kept.
	base := pod.DeepCopy()
	base.Spec.InitContainers = slices.Delete(base.Spec.InitContainers, j, j+1)
	base.Spec.Containers = slices.Delete(base.Spec.Containers, k, k+1)
	if k := indexOf(base.Spec.InitContainers, TrustContainerName); k >= 0 {
		base.Spec.InitContainers = slices.Delete(base.Spec.InitContainers, k, k+1)
	}
	g := isGuaranteed(base)
	if !sameSpec(pod.Spec.InitContainers[j], i.initContainer(g)) || !sameSpec(pod.Spec.Containers[k], i.proxyContainer(g)) {
		return j, false
	}
	again := pod.DeepCopy()
	if _, err := i.prepareProxyless(again); err != nil {
		return j, false
	}
	i.prepareTrust(again, g)
	return j, apiequality.Semantic.DeepEqual(again.Spec, pod.Spec) && maps.Equal(again.Annotations, pod.Annotations)
}

// sameSpec compares the fields of our containers that decide what runs
// and with which privileges.
func sameSpec(have, want corev1.Container) bool {
	return have.Image == want.Image &&
		slices.Equal(have.Command, want.Command) &&
		slices.Equal(have.Args, want.Args) &&
		apiequality.Semantic.DeepEqual(have.Env, want.Env) &&
		apiequality.Semantic.DeepEqual(have.SecurityContext, want.SecurityContext)
}

// isGuaranteed reports whether every container (init containers included)
// has CPU and memory limits equal to its requests, i.e. the pod's QoS class
// is Guaranteed. Our containers then get limits equal to their requests so
// the pod stays Guaranteed.
func isGuaranteed(pod *corev1.Pod) bool {
	all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	if len(all) == 0 {
		return false
	}
	for _, c := range all {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, ok := c.Resources.Limits[r]
			if !ok || l.IsZero() {
				return false
			}
			if q, ok := c.Resources.Requests[r]; ok && q.Cmp(l) != 0 {
				return false
			}
		}
	}
	return true
}

func requirements(req corev1.ResourceList, guaranteed bool) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: req}
	if guaranteed {
		r.Limits = req.DeepCopy()
	}
	return r
}

func (i *Injector) proxyContainer(guaranteed bool) corev1.Container {
	uid := i.cfg.ProxyUID
	return corev1.Container{
		Name:  ProxyContainerName,
		Image: i.cfg.SidecarImage,
		// No command: both the envoyproxy/envoy image (its entrypoint
		// script runs envoy when the first argument is a flag) and the
		// distroless one (entrypoint envoy) take these as Envoy's flags.
		// --config-yaml is a complete bootstrap (Envoy's CLI: "The YAML
		// string for a bootstrap configuration"); the kubelet expands its
		// $(POD_*) references before Envoy starts. Hot restart is off: one
		// Envoy per container, no shared memory needed.
		Args: []string{"--config-yaml", i.bootstrap, "--disable-hot-restart"},
		Env: []corev1.EnvVar{
			fieldEnv(EnvPodIP, "status.podIP"),
			fieldEnv(EnvPodName, "metadata.name"),
			fieldEnv(EnvPodNamespace, "metadata.namespace"),
		},
		Resources: requirements(i.sidecar, guaranteed),
		// The kubelet probes the pod IP, so it asks the readiness listener,
		// which forwards GET /ready to the admin interface on loopback:
		// ready once Envoy has its configuration from xDS.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path:   "/ready",
				Port:   intOrPort(ReadyPort),
				Scheme: corev1.URISchemeHTTP,
			}},
			InitialDelaySeconds: 1,
			TimeoutSeconds:      1,
			PeriodSeconds:       5,
			SuccessThreshold:    1,
			FailureThreshold:    3,
		},
		ImagePullPolicy:          corev1.PullIfNotPresent,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// CaptureArgs are the arguments of `egressguard` in the init container:
// redirect outbound TCP to the sidecar, except the sidecar's own (its UID,
// which also covers its xDS connection), DNS over TCP to dnsguard (its IP
// only, never port 53 to every host: that would be a way around the
// sidecar), and the excluded CIDRs.
func (i *Injector) CaptureArgs() []string {
	args := []string{
		"iptables", "--apply",
		"--proxy-port", strconv.FormatUint(uint64(i.cfg.OutboundPort), 10),
		"--proxy-uid", strconv.FormatInt(i.cfg.ProxyUID, 10),
	}
	if a, err := netip.ParseAddr(i.cfg.DNSServer); err == nil {
		args = append(args, "--exclude-cidr", netip.PrefixFrom(a, a.BitLen()).String())
	}
	for _, c := range i.cfg.ExcludeCIDRs {
		args = append(args, "--exclude-cidr", c)
	}
	return args
}

func (i *Injector) initContainer(guaranteed bool) corev1.Container {
	return corev1.Container{
		Name:    InitContainerName,
		Image:   i.cfg.InitImage,
		Command: []string{"egressguard"},
		Args:    i.CaptureArgs(),
		Resources: requirements(corev1.ResourceList{
			corev1.ResourceCPU:    initCPU,
			corev1.ResourceMemory: initMemory,
		}, guaranteed),
		ImagePullPolicy:          corev1.PullIfNotPresent,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// Root with NET_ADMIN and NET_RAW, the least iptables-restore
		// needs in the pod's network namespace; nothing else (no
		// privileged mode, no privilege escalation). Explicit runAsUser 0
		// and runAsNonRoot false override a pod-level runAsNonRoot.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}
}

// dnsConfig is the pod's DNS configuration after injection. The
// nameservers are always replaced by dnsguard alone: a staging pod must
// not resolve around it. What else is kept depends on the pod's dnsPolicy:
//
//   - ClusterFirst (the default), and ClusterFirstWithHostNet, which on a
//     pod without host network means ClusterFirst: the cluster search
//     paths (<ns>.svc.<domain>, svc.<domain>, <domain>) and ndots:5, as the
//     kubelet would write them, then the pod's own dnsConfig searches and
//     options (a pod option replaces ours of the same name, as the kubelet
//     merges them);
//   - None: the pod wrote its whole resolv.conf; its searches and options
//     are kept as they are, nothing added;
//   - Default: the pod resolved like its node. Its own dnsConfig searches
//     and options are kept, nothing added; the node's search domains and
//     options, which the webhook cannot know, are lost (noted).
func (i *Injector) dnsConfig(pod *corev1.Pod, ns string) (*corev1.PodDNSConfig, []string, error) {
	own := pod.Spec.DNSConfig
	if own == nil {
		own = &corev1.PodDNSConfig{}
	}
	var notes []string
	if len(own.Nameservers) > 0 && !slices.Equal(own.Nameservers, []string{i.cfg.DNSServer}) {
		notes = append(notes, fmt.Sprintf("replaced dnsConfig nameservers %v with dnsguard %s", own.Nameservers, i.cfg.DNSServer))
	}
	var searches []string
	var opts []corev1.PodDNSConfigOption
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
	case corev1.DNSDefault:
		notes = append(notes, "dnsPolicy Default: the node's search domains and options are not kept (only dnsguard as nameserver, plus the pod's own dnsConfig)")
	default: // "", ClusterFirst, ClusterFirstWithHostNet (no host network here), unknown
		d := i.cfg.ClusterDomain
		searches = []string{ns + ".svc." + d, "svc." + d, d}
		opts = []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("5")}}
	}
	for _, s := range own.Searches {
		if !slices.Contains(searches, s) {
			searches = append(searches, s)
		}
	}
	for _, o := range own.Options {
		o = *o.DeepCopy()
		if k := slices.IndexFunc(opts, func(x corev1.PodDNSConfigOption) bool { return x.Name == o.Name }); k >= 0 {
			opts[k] = o
			continue
		}
		opts = append(opts, o)
	}
	if n := len(searches); n > maxDNSSearches {
		return nil, nil, &RefusedError{Reason: fmt.Sprintf("spec.dnsConfig.searches: %d search paths with the cluster's, more than the %d Kubernetes allows", n, maxDNSSearches)}
	}
	if n := len(strings.Join(searches, " ")); n > maxDNSSearchChars {
		return nil, nil, &RefusedError{Reason: fmt.Sprintf("spec.dnsConfig.searches: %d characters with the cluster's, more than the %d Kubernetes allows", n, maxDNSSearchChars)}
	}
	return &corev1.PodDNSConfig{Nameservers: []string{i.cfg.DNSServer}, Searches: searches, Options: opts}, notes, nil
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

func ptr[T any](v T) *T { return &v }

func intOrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }
