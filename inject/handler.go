package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes bounds an AdmissionReview body. The API server refuses
// objects over 3 MiB (its request limit), and a CREATE review carries one
// object plus a small envelope.
const MaxRequestBytes = 6 << 20

const admissionAPIVersion = "admission.k8s.io/v1"

// Handler serves AdmissionReview (admission.k8s.io/v1) requests: POST with
// Content-Type application/json. It answers
//
//   - 200 with the review's response: allowed with a JSONPatch for injected
//     pods, allowed without a patch for skipped pods and for anything that
//     is not the CREATE of a Pod, denied for pods Inject refuses
//     (RefusedError);
//   - 400 for a request that is not a well-formed AdmissionReview v1 (wrong
//     method, content type, apiVersion or kind, no request or uid, a body
//     over MaxRequestBytes, a pod that does not decode strictly);
//   - 500 when injection or the patch check fails.
//
// The API server treats every non-200 answer as a failed call, so
// failurePolicy (chart value) decides whether such pods are admitted
// unchanged (Ignore) or refused (Fail).
type Handler struct {
	inj *Injector
	m   *Metrics
	log *zap.Logger
}

// NewHandler builds the injector from cfg (see NewInjector). m may be nil
// (metrics not registered), log may be nil (no logging).
func NewHandler(cfg Config, m *Metrics, log *zap.Logger, opts ...Option) (*Handler, error) {
	inj, err := NewInjector(cfg, opts...)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{inj: inj, m: m, log: log}, nil
}

// httpError is an answer other than 200.
type httpError struct {
	code  int
	stage string
	err   error
}

func (e *httpError) Error() string { return e.err.Error() }

func badRequest(format string, args ...any) *httpError {
	return &httpError{code: http.StatusBadRequest, stage: stageDecode, err: fmt.Errorf("inject: bad request: "+format, args...)}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { h.m.duration.Observe(time.Since(start).Seconds()) }()

	rev, herr := h.read(w, r)
	if herr != nil {
		h.fail(w, herr, nil)
		return
	}
	req := rev.Request
	resp, out, herr := h.admit(req)
	if herr != nil {
		h.fail(w, herr, req)
		return
	}
	resp.UID = req.UID
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionAPIVersion, Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		h.fail(w, &httpError{code: http.StatusInternalServerError, stage: stageEncode, err: fmt.Errorf("inject: encode response: %w", err)}, req)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(body); err != nil {
		h.log.Warn("admission.write", zap.String("uid", string(req.UID)), zap.Error(err))
	}
	h.m.requests.WithLabelValues(out.result).Inc()
	switch out.result {
	case ResultInjected:
		h.m.injected.Inc()
	case ResultSkipped:
		h.m.skipped.WithLabelValues(out.reason).Inc()
	}
	fields := append(requestFields(req),
		zap.String("result", out.result),
		zap.Duration("duration", time.Since(start)))
	if out.reason != "" {
		fields = append(fields, zap.String("reason", out.reason))
	}
	if len(out.notes) > 0 {
		fields = append(fields, zap.Strings("notes", out.notes))
	}
	if len(out.wouldDeny) > 0 {
		h.m.wouldDeny.Inc()
		fields = append(fields, zap.Strings("would_deny", out.wouldDeny))
	}
	h.log.Info("admission", fields...)
}

// read checks the HTTP request and decodes the review.
func (h *Handler) read(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, *httpError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, badRequest("method %s: want POST", r.Method)
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, badRequest("content type %q: want application/json", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, badRequest("body larger than %d bytes", tooBig.Limit)
		}
		return nil, badRequest("read body: %v", err)
	}
	rev, err := decodeReview(body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return rev, nil
}

// decodeReview decodes an AdmissionReview v1 the way the API server
// encodes it: case-sensitive names, no duplicate fields. Unknown fields of
// the envelope are tolerated (newer API servers add request fields); the
// pod inside is decoded strictly later.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	rev := &admissionv1.AdmissionReview{}
	strict, err := kjson.UnmarshalStrict(body, rev, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decode AdmissionReview: %w", errors.Join(strict...))
	}
	if rev.APIVersion != admissionAPIVersion || rev.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("apiVersion %q kind %q: want %s AdmissionReview", rev.APIVersion, rev.Kind, admissionAPIVersion)
	}
	if rev.Request == nil {
		return nil, errors.New("request: missing")
	}
	if rev.Request.UID == "" {
		return nil, errors.New("request.uid: missing")
	}
	if rev.Response != nil {
		return nil, errors.New("response: set in a request")
	}
	return rev, nil
}

// outcome is what a review came to, for metrics and the log.
type outcome struct {
	result    string
	reason    string
	notes     []string
	wouldDeny []string
}

// admit decides on one request.
func (h *Handler) admit(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, outcome, *httpError) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return allow, outcome{result: ResultSkipped, reason: SkipNotPod}, nil
	}
	if req.Operation != admissionv1.Create {
		return allow, outcome{result: ResultSkipped, reason: SkipOperation}, nil
	}
	raw := req.Object.Raw
	if len(raw) == 0 {
		return nil, outcome{}, badRequest("request.object: missing")
	}
	pod, err := DecodePod(raw)
	if err != nil {
		return nil, outcome{}, badRequest("request.object: %v", err)
	}
	out, d, err := h.inj.Inject(pod, req.Namespace)
	if err != nil {
		if refused, ok := errors.AsType[*RefusedError](err); ok {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
				Status:  metav1.StatusFailure,
				Reason:  metav1.StatusReasonForbidden,
				Code:    http.StatusForbidden,
				Message: refused.Error(),
			}}, outcome{result: ResultRefused, reason: refused.Reason}, nil
		}
		return nil, outcome{}, &httpError{code: http.StatusInternalServerError, stage: stageInject, err: err}
	}
	patch, err := CreatePatch(raw, pod, out)
	if err != nil {
		return nil, outcome{}, &httpError{code: http.StatusInternalServerError, stage: stagePatch, err: err}
	}
	o := outcome{result: ResultInjected, notes: d.Notes, wouldDeny: d.WouldDeny}
	if !d.Injected {
		o = outcome{result: ResultSkipped, reason: d.Reason, notes: d.Notes, wouldDeny: d.WouldDeny}
	}
	// Opt-outs and report-mode findings reach the API server's audit log
	// (auditAnnotations) and the client (warnings, shown by kubectl).
	for k, v := range d.Audit {
		if allow.AuditAnnotations == nil {
			allow.AuditAnnotations = map[string]string{}
		}
		allow.AuditAnnotations[k] = v
		allow.Warnings = append(allow.Warnings, "egressguard: admitted by opt-out "+k+": "+v)
	}
	if len(d.WouldDeny) > 0 {
		if allow.AuditAnnotations == nil {
			allow.AuditAnnotations = map[string]string{}
		}
		allow.AuditAnnotations[AuditWouldDeny] = strings.Join(d.WouldDeny, "; ")
		for _, w := range d.WouldDeny {
			allow.Warnings = append(allow.Warnings, "egressguard (report mode) would refuse this pod: "+w)
		}
	}
	slices.Sort(allow.Warnings)
	if patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		allow.PatchType = &pt
		allow.Patch = patch
	}
	return allow, o, nil
}

func (h *Handler) fail(w http.ResponseWriter, e *httpError, req *admissionv1.AdmissionRequest) {
	result := ResultError
	if e.code == http.StatusBadRequest {
		result = ResultBadRequest
	}
	h.m.requests.WithLabelValues(result).Inc()
	h.m.errors.WithLabelValues(e.stage).Inc()
	fields := append(requestFields(req), zap.String("result", result), zap.Int("status", e.code), zap.Error(e.err))
	if e.code >= http.StatusInternalServerError {
		h.log.Error("admission", fields...)
	} else {
		h.log.Warn("admission", fields...)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.code)
	_, _ = io.WriteString(w, e.err.Error()+"\n")
}

func requestFields(req *admissionv1.AdmissionRequest) []zap.Field {
	if req == nil {
		return nil
	}
	return []zap.Field{
		zap.String("uid", string(req.UID)),
		zap.String("namespace", req.Namespace),
		zap.String("pod", podName(req)),
		zap.String("operation", string(req.Operation)),
		zap.Bool("dry_run", req.DryRun != nil && *req.DryRun),
	}
}

// podName is the request's name, or the object's generateName followed by
// "*" for pods named by the API server after admission.
func podName(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" {
		return req.Name
	}
	var meta struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if json.Unmarshal(req.Object.Raw, &meta) == nil && meta.Metadata.GenerateName != "" {
		return strings.TrimSuffix(meta.Metadata.GenerateName, "-") + "-*"
	}
	return ""
}
