package nodeauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Claims the API server's ServiceAccount authenticator puts in a bound
// token's user info extra (k8s.io/apiserver/pkg/authentication/serviceaccount).
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountPrefix = "system:serviceaccount:"

// PodIdentity is what a validated token proves: the ServiceAccount it was
// issued to and the pod it is bound to.
type PodIdentity struct {
	Namespace      string
	ServiceAccount string
	Pod            string
	PodUID         string
}

// String is "namespace/pod".
func (p PodIdentity) String() string { return p.Namespace + "/" + p.Pod }

// ErrTokenRejected wraps every token the API server did not authenticate
// (expired, wrong audience, bad signature, bound pod gone) or that proves
// no pod.
var ErrTokenRejected = errors.New("token rejected")

// Reviewer validates a bearer token and returns the pod it is bound to. An
// error wrapping ErrTokenRejected is a verdict on the token; any other
// error is a failure to get one.
type Reviewer interface {
	Review(ctx context.Context, token string) (PodIdentity, error)
}

// TokenReviewer asks the Kubernetes API server (TokenReview,
// authentication.k8s.io/v1) whether a token is valid for one audience. Its
// ServiceAccount needs `create` on `tokenreviews`.
type TokenReviewer struct {
	client   kubernetes.Interface
	audience string
}

// NewTokenReviewer returns a Reviewer for tokens issued for audience.
func NewTokenReviewer(client kubernetes.Interface, audience string) *TokenReviewer {
	return &TokenReviewer{client: client, audience: audience}
}

// Review implements Reviewer. The API server checks signature, expiry,
// audience and that the bound pod still exists with the bound UID; Review
// then requires a ServiceAccount user bound to a pod.
func (r *TokenReviewer) Review(ctx context.Context, token string) (PodIdentity, error) {
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{r.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return PodIdentity{}, fmt.Errorf("nodeauth: TokenReview: %w", err)
	}
	return identityFromStatus(tr.Status, r.audience)
}

// identityFromStatus reads the pod a TokenReview's status proves.
func identityFromStatus(st authnv1.TokenReviewStatus, audience string) (PodIdentity, error) {
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return PodIdentity{}, fmt.Errorf("%w: %s", ErrTokenRejected, msg)
	}
	// An API server that ignores spec.audiences leaves status.audiences
	// empty: that proves nothing about the audience, so it is refused.
	if !slices.Contains(st.Audiences, audience) {
		return PodIdentity{}, fmt.Errorf("%w: not issued for audience %q (token audiences %q)", ErrTokenRejected, audience, st.Audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return PodIdentity{}, fmt.Errorf("%w: user %q is not a ServiceAccount", ErrTokenRejected, st.User.Username)
	}
	pod := first(st.User.Extra[ExtraPodName])
	if pod == "" {
		return PodIdentity{}, fmt.Errorf("%w: token of %s/%s is not bound to a pod (use a projected ServiceAccount token)",
			ErrTokenRejected, ns, sa)
	}
	return PodIdentity{Namespace: ns, ServiceAccount: sa, Pod: pod, PodUID: first(st.User.Extra[ExtraPodUID])}, nil
}

func first(v authnv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
