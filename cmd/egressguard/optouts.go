package main

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/internal/admin"
	"github.com/egressguard/egressguard/policy"
)

// catalogOptOuts decides host-network opt-outs on the serving catalog, so
// a reload adds, changes or withdraws them without restarting the webhook.
func catalogOptOuts(eng *policy.Engine, now func() time.Time) inject.HostNetworkOptOuts {
	return func(id string, pod *corev1.Pod, namespace string) (string, error) {
		o, err := eng.Catalog().AdmitHostNetwork(id, policy.OptOutPod{
			Namespace: namespace, Name: pod.Name, GenerateName: pod.GenerateName, Labels: pod.Labels,
		}, now())
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("owner %s, ticket %s, expires %s", o.Owner, o.Ticket, o.Expires), nil
	}
}

// optOutViews lists the serving catalog's opt-outs for the admin page,
// with the webhook's recent admissions (log nil: the webhook is off).
func (g *guard) optOutViews() []admin.OptOutView {
	return admin.NewOptOutViews(g.engine.Catalog(), g.optOutLog, time.Now())
}
