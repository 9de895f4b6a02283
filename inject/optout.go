package inject

import (
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// HostNetworkOptOuts decides whether the opt-out id, named by a pod's
// AnnotationHostNetworkOptOut, admits that host-network pod (in namespace,
// the pod's own or the request's). It returns what the audit log should
// say of the opt-out (owner, ticket, expiry), or an error saying why the
// opt-out does not apply. serve wires it to the live catalog's
// host_network_opt_outs (policy.Catalog.AdmitHostNetwork).
type HostNetworkOptOuts func(id string, pod *corev1.Pod, namespace string) (audit string, err error)

// OptOutAdmission is one host-network pod admitted under an opt-out.
type OptOutAdmission struct {
	Time      time.Time `json:"time"`
	OptOut    string    `json:"opt_out"`
	Namespace string    `json:"namespace"`
	// Pod is the pod's name, or its generateName followed by "*" when the
	// API server had not named it yet.
	Pod string `json:"pod"`
}

// OptOutLog keeps the last admissions under each opt-out for the admin
// page. It is safe for concurrent use.
type OptOutLog struct {
	mu     sync.Mutex
	perID  int
	recent map[string][]OptOutAdmission // newest last, at most perID each
}

// NewOptOutLog keeps perID admissions per opt-out (<= 0: 20).
func NewOptOutLog(perID int) *OptOutLog {
	if perID <= 0 {
		perID = 20
	}
	return &OptOutLog{perID: perID, recent: map[string][]OptOutAdmission{}}
}

func (l *OptOutLog) add(a OptOutAdmission) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := append(l.recent[a.OptOut], a)
	if len(s) > l.perID {
		s = append(s[:0:0], s[len(s)-l.perID:]...)
	}
	l.recent[a.OptOut] = s
}

// Recent returns the admissions under opt-out id, newest first.
func (l *OptOutLog) Recent(id string) []OptOutAdmission {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.recent[id]
	out := make([]OptOutAdmission, len(s))
	for i, a := range s {
		out[len(s)-1-i] = a
	}
	return out
}

// hostNetworkGate holds the opt-out check and log; the zero value admits
// no opt-out.
type hostNetworkGate struct {
	check HostNetworkOptOuts
	log   *OptOutLog
}

// SetHostNetworkOptOuts makes the handler's injector admit host-network
// pods whose AnnotationHostNetworkOptOut names an opt-out that check
// accepts, recording each admission in log (may be nil). Call it before
// serving. Without it every host-network pod is refused (enforce) or
// recorded as a would-deny (report).
func (h *Handler) SetHostNetworkOptOuts(check HostNetworkOptOuts, log *OptOutLog) {
	h.inj.hostNet = hostNetworkGate{check: check, log: log}
}

// admitHostNetwork decides a host-network pod: admitted unchanged and
// audited when its annotation names an opt-out the catalog holds for it,
// else refused (enforce) or admitted with a would-deny (report).
func (i *Injector) admitHostNetwork(pod *corev1.Pod, namespace string) (*corev1.Pod, Decision, error) {
	ns := pod.Namespace
	if ns == "" {
		ns = namespace
	}
	fix := "spec.hostNetwork: a host-network pod bypasses the egressguard sidecar, its traffic capture and NetworkPolicy: " +
		"set hostNetwork: false, or, where the pod must use the node's network, add an entry to the catalog's " +
		"host_network_opt_outs (id, namespace " + ns + ", pods or labels, owner, ticket, expires; reviewed like an exception) " +
		"and annotate the pod " + AnnotationHostNetworkOptOut + ": <id>"
	id := strings.TrimSpace(pod.Annotations[AnnotationHostNetworkOptOut])
	var why string
	switch {
	case id == "":
	case i.hostNet.check == nil:
		why = "this webhook has no catalog of opt-outs"
	default:
		audit, err := i.hostNet.check(id, pod, ns)
		if err == nil {
			if i.hostNet.log != nil {
				name := pod.Name
				if name == "" {
					name = pod.GenerateName + "*"
				}
				i.hostNet.log.add(OptOutAdmission{Time: time.Now().UTC(), OptOut: id, Namespace: ns, Pod: name})
			}
			return pod, Decision{Reason: SkipHostNetwork, Audit: map[string]string{AuditHostNetworkOptOut: id + ": " + audit},
				Notes: []string{"host network admitted by opt-out " + id + ": " + audit}}, nil
		}
		why = err.Error()
	}
	msg := fix
	if why != "" {
		msg = AnnotationHostNetworkOptOut + " " + `"` + id + `" does not admit this pod: ` + why + "; " + fix
	}
	if i.cfg.Mode == ModeReport {
		return pod, Decision{Reason: SkipHostNetwork, WouldDeny: []string{msg}}, nil
	}
	return nil, Decision{}, &RefusedError{Reason: msg}
}
