package dnsguard

import (
	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// Log field keys of the canonical decision line.
const (
	LogFieldWorkload  = "workload"
	LogFieldNamespace = "namespace"
	LogFieldEnv       = "environment"
	LogFieldName      = "name"
	LogFieldQtype     = "qtype"
	LogFieldAction    = "action"
	LogFieldRule      = "rule"
	LogFieldReason    = "reason"
	LogFieldWouldDeny = "would_deny"
	LogFieldAnswer    = "answer"
)

// decided counts, logs and records (decisionlog.PathDNS) one decision that
// is not a plain allow: deny, redirect, a production answer replaced by the
// deny answer, and report-mode would-deny. answer is set
// when the decision was about the upstream answer (a CNAME target or an
// address), not the asked name.
func (s *Server) decided(cp *clientPlan, qname string, qtype uint16, dest plan.Destination, dec plan.Decision, answer string) {
	action := dec.Action.String()
	if dec.WouldDeny {
		action = "would_deny"
		s.metrics.WouldDeny.Inc()
	} else if answer != "" {
		s.metrics.AnswerBlocked.Inc()
	}
	s.metrics.RuleHits.WithLabelValues(dec.RuleID(), action).Inc()
	if ce := s.log.Check(zap.InfoLevel, "dns.decision"); ce != nil {
		fields := []zap.Field{
			zap.String(LogFieldWorkload, cp.wl.Name),
			zap.String(LogFieldNamespace, cp.wl.Namespace),
			zap.String(LogFieldEnv, cp.wl.Environment),
			zap.String(LogFieldName, qname),
			zap.String(LogFieldQtype, dns.Type(qtype).String()),
			zap.String(LogFieldAction, dec.Action.String()),
			zap.String(LogFieldRule, dec.RuleID()),
			zap.String(LogFieldReason, dec.Reason()),
			zap.Bool(LogFieldWouldDeny, dec.WouldDeny),
		}
		if answer != "" {
			fields = append(fields, zap.String(LogFieldAnswer, answer))
		}
		ce.Write(fields...)
	}
	if s.sink != nil {
		s.sink.Log(decisionlog.NewRecord(decisionlog.PathDNS, cp.wl, dest, dec))
	}
}
