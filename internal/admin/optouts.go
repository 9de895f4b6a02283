package admin

import (
	"net/http"
	"time"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

// OptOutView is one host_network_opt_outs entry of the serving catalog
// with the pods the webhook recently admitted under it.
type OptOutView struct {
	policy.HostNetworkOptOut
	// Expired is true once the entry's last day is over: the webhook
	// refuses pods naming it.
	Expired bool `json:"expired"`
	// Admitted are the recent admissions, newest first.
	Admitted []inject.OptOutAdmission `json:"admitted"`
}

// NewOptOutViews lists cat's opt-outs at now with log's admissions (log may
// be nil: the webhook is off).
func NewOptOutViews(cat *policy.Catalog, log *inject.OptOutLog, now time.Time) []OptOutView {
	out := make([]OptOutView, 0, len(cat.HostNetworkOptOuts))
	for _, o := range cat.HostNetworkOptOuts {
		v := OptOutView{HostNetworkOptOut: o, Expired: o.Expires.ExpiredAt(now), Admitted: []inject.OptOutAdmission{}}
		if log != nil {
			v.Admitted = log.Recent(o.ID)
		}
		out = append(out, v)
	}
	return out
}

// IdentityRefusal is an xDS stream whose node ID was not proven, as the
// admin API shows it.
type IdentityRefusal struct {
	nodeauth.Refusal
	// Mode is "refused" (enforce: the stream was closed with
	// PermissionDenied) or "would-deny" (report: it was served).
	Mode string `json:"mode"`
}

// Modes of IdentityRefusal.
const (
	ModeRefused   = "refused"
	ModeWouldDeny = "would-deny"
)

// NewIdentityRefusals converts nodeauth's recent refusals, newest first.
func NewIdentityRefusals(rs []nodeauth.Refusal) []IdentityRefusal {
	out := make([]IdentityRefusal, 0, len(rs))
	for _, r := range rs {
		m := ModeWouldDeny
		if r.Enforced {
			m = ModeRefused
		}
		out = append(out, IdentityRefusal{Refusal: r, Mode: m})
	}
	return out
}

// identityAndOptOutAPIs adds /api/identity and /api/optouts to mux.
func identityAndOptOutAPIs(mux *http.ServeMux, o Options) {
	mux.HandleFunc("GET /api/identity", func(w http.ResponseWriter, _ *http.Request) {
		refusals := []IdentityRefusal{}
		if o.IdentityRefusals != nil {
			refusals = NewIdentityRefusals(o.IdentityRefusals())
		}
		WriteJSON(w, http.StatusOK, map[string]any{"enabled": o.IdentityRefusals != nil, "refusals": refusals})
	})
	mux.HandleFunc("GET /api/optouts", func(w http.ResponseWriter, _ *http.Request) {
		views := []OptOutView{}
		if o.HostNetworkOptOuts != nil {
			views = o.HostNetworkOptOuts()
		}
		WriteJSON(w, http.StatusOK, map[string]any{"opt_outs": views})
	})
}
