package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Authenticator decides whether a request may read the admin APIs and page.
// It returns the caller's name, or ErrUnauthenticated (401) or
// ErrForbidden (403) wrapped with the reason.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (user string, err error)
}

// Authentication outcomes.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

// SessionCookie carries the bearer token for the admin page, set by
// POST /login (a browser cannot add an Authorization header to a page load).
const SessionCookie = "egressguard_admin"

// bearer returns the request's credential: the Authorization bearer token,
// else the session cookie.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// RequireAuth serves h to authenticated callers only. Others get 401 (with
// a WWW-Authenticate challenge; the page's path gets the login form) or
// 403. POST /login sets the session cookie from a form's token field.
func RequireAuth(a Authenticator, h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimSpace(r.PostFormValue("token"))
		if _, err := a.Authenticate(r.Context(), tok); err != nil || tok == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(loginPage)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, err := a.Authenticate(r.Context(), bearer(r))
		switch {
		case err == nil:
			h.ServeHTTP(w, r)
		case errors.Is(err, ErrForbidden):
			WriteJSON(w, http.StatusForbidden, map[string]string{"error": err.Error()})
		case r.URL.Path == "/" && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("WWW-Authenticate", `Bearer realm="egressguard"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(loginPage)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="egressguard"`)
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
		}
	})
	return mux
}

var loginPage = []byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>egressguard admin: sign in</title></head>
<body style="font:14px system-ui,sans-serif;margin:40px">
<h1 style="font-size:18px">egressguard admin</h1>
<p>The admin page and APIs need a bearer token (admin.auth).</p>
<form method="post" action="/login"><input name="token" type="password" autocomplete="off" size="50" placeholder="token">
<button type="submit">Sign in</button></form></body></html>
`)

// TokenFile authenticates a bearer token against the one in a file (a
// mounted Secret), re-read when the file changes, so a rotated Secret takes
// effect without a restart.
type TokenFile struct {
	path string

	mu    sync.Mutex
	mtime time.Time
	size  int64
	sum   [sha256.Size]byte
}

// NewTokenFile reads the token file once; an empty or unreadable file is
// an error.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if _, err := t.current(); err != nil {
		return nil, err
	}
	return t, nil
}

// current returns the token's hash, re-reading the file when it changed.
func (t *TokenFile) current() ([sha256.Size]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := os.Stat(t.path)
	if err != nil {
		return t.sum, fmt.Errorf("admin.auth.token_file: %w", err)
	}
	if st.ModTime().Equal(t.mtime) && st.Size() == t.size {
		return t.sum, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return t.sum, fmt.Errorf("admin.auth.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return t.sum, fmt.Errorf("admin.auth.token_file: %s: the token must be at least 16 characters", t.path)
	}
	t.sum, t.mtime, t.size = sha256.Sum256([]byte(tok)), st.ModTime(), st.Size()
	return t.sum, nil
}

// Authenticate implements Authenticator (constant-time comparison).
func (t *TokenFile) Authenticate(_ context.Context, tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	want, err := t.current()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "", fmt.Errorf("%w: wrong token", ErrUnauthenticated)
	}
	return "token-file", nil
}

// KubeAttributes is what a Kubernetes caller must be allowed to do, checked
// with a SubjectAccessReview: verb get on resource
// adminapi.egressguard.io (a name only RBAC knows; no CRD needed). Bind
// it with a ClusterRole rule {apiGroups: [egressguard.io], resources:
// [adminapi], verbs: [get]}.
var KubeAttributes = authzv1.ResourceAttributes{Group: "egressguard.io", Resource: "adminapi", Verb: "get"}

// kubeCacheTTL is how long an answer of the API server is reused (as
// kube-rbac-proxy and the kubelet cache theirs).
const kubeCacheTTL = time.Minute

// Kube authenticates bearer tokens with a TokenReview and authorizes the
// user with a SubjectAccessReview (KubeAttributes), the pattern
// kube-rbac-proxy and the kubelet follow. Results are cached for a minute,
// by token hash, in bounded memory.
type Kube struct {
	client    kubernetes.Interface
	audiences []string
	now       func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]kubeResult
}

type kubeResult struct {
	user    string
	err     error
	expires time.Time
}

// maxKubeCache bounds the cache; past it, it starts over.
const maxKubeCache = 1024

// NewKube returns the Kubernetes authenticator; audiences may be empty
// (the API server's default audience).
func NewKube(client kubernetes.Interface, audiences []string) *Kube {
	return &Kube{client: client, audiences: audiences, now: time.Now, cache: map[[sha256.Size]byte]kubeResult{}}
}

// Authenticate implements Authenticator.
func (k *Kube) Authenticate(ctx context.Context, tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(tok))
	now := k.now()
	k.mu.Lock()
	if r, ok := k.cache[key]; ok && now.Before(r.expires) {
		k.mu.Unlock()
		return r.user, r.err
	}
	k.mu.Unlock()
	user, cacheable, err := k.review(ctx, tok)
	if cacheable {
		k.mu.Lock()
		if len(k.cache) >= maxKubeCache {
			k.cache = map[[sha256.Size]byte]kubeResult{}
		}
		k.cache[key] = kubeResult{user: user, err: err, expires: now.Add(kubeCacheTTL)}
		k.mu.Unlock()
	}
	return user, err
}

// review asks the API server; an error talking to it is not cached.
func (k *Kube) review(ctx context.Context, tok string) (user string, cacheable bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr, err := k.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: k.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", false, fmt.Errorf("%w: TokenReview: %w", ErrUnauthenticated, err)
	}
	if !tr.Status.Authenticated {
		return "", true, fmt.Errorf("%w: the API server did not authenticate the token %s", ErrUnauthenticated, tr.Status.Error)
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	attrs := KubeAttributes
	sar, err := k.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra, ResourceAttributes: &attrs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", false, fmt.Errorf("%w: SubjectAccessReview: %w", ErrUnauthenticated, err)
	}
	if !sar.Status.Allowed {
		return "", true, fmt.Errorf("%w: %s may not %s %s.%s", ErrForbidden, u.Username, attrs.Verb, attrs.Resource, attrs.Group)
	}
	return u.Username, true, nil
}
