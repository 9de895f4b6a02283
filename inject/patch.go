package inject

import (
	"encoding/json"
	"fmt"

	ejsonpatch "github.com/evanphx/json-patch/v5"
	gjsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	kjson "sigs.k8s.io/json"
)

// CreatePatch returns the JSON patch (RFC 6902) that turns the pod in raw
// (the admission request's object, exactly as the API server sent it, and
// which decoded to original) into mutated, or nil when mutated does not
// differ from original.
//
// The patch is computed by gomodules.xyz/jsonpatch (the library
// controller-runtime uses) from raw itself, so every operation applies to
// the document the API server will patch; the pod was decoded strictly, so
// raw holds no field the mutated pod's encoding could drop. It is then
// checked with a second implementation, github.com/evanphx/json-patch (the
// API server's own): applied to raw, decoded strictly, it must give a pod
// semantically equal to mutated. Any difference is an error: the handler
// answers HTTP 500 and the webhook's failurePolicy decides.
func CreatePatch(raw []byte, original, mutated *corev1.Pod) ([]byte, error) {
	if original == mutated || equality.Semantic.DeepEqual(original, mutated) {
		return nil, nil
	}
	to, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("inject: patch: encode mutated: %w", err)
	}
	ops, err := gjsonpatch.CreatePatch(raw, to)
	if err != nil {
		return nil, fmt.Errorf("inject: patch: create: %w", err)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("inject: patch: encode: %w", err)
	}
	if err := VerifyPatch(raw, patch, mutated); err != nil {
		return nil, err
	}
	return patch, nil
}

// VerifyPatch applies patch to raw with evanphx/json-patch, decodes the
// result strictly into a Pod and compares it with want.
func VerifyPatch(raw, patch []byte, want *corev1.Pod) error {
	p, err := ejsonpatch.DecodePatch(patch)
	if err != nil {
		return fmt.Errorf("inject: patch: verify: decode: %w", err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		return fmt.Errorf("inject: patch: verify: apply to the request's pod: %w", err)
	}
	got, err := DecodePod(out)
	if err != nil {
		return fmt.Errorf("inject: patch: verify: patched pod: %w", err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		return fmt.Errorf("inject: patch: verify: the patched pod differs from the injected pod")
	}
	return nil
}

// DecodePod decodes a pod the way the API server does (case-sensitive
// field names), strictly: unknown and duplicate fields are errors. An
// unknown field would be a field of a newer Kubernetes than this webhook
// was built with, which a patch computed here could not be trusted with.
func DecodePod(b []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	strict, err := kjson.UnmarshalStrict(b, pod, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("decode pod: %w", joinErrs(strict))
	}
	if pod.Kind != "" && (pod.Kind != "Pod" || (pod.APIVersion != "" && pod.APIVersion != "v1")) {
		return nil, fmt.Errorf("decode pod: object is %s %s, not v1 Pod", pod.APIVersion, pod.Kind)
	}
	return pod, nil
}
