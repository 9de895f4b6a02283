package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeAPIServer answers TokenReviews (token "alice-token" is alice,
// "bob-token" is bob) and SubjectAccessReviews (only alice may get
// adminapi.egressguard.io), counting the calls.
func fakeAPIServer(t *testing.T) (*fake.Clientset, *int) {
	t.Helper()
	c := fake.NewClientset()
	calls := 0
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		switch tr.Spec.Token {
		case "alice-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "alice", Groups: []string{"sre"}}}
		case "bob-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:staging:bob"}}
		default:
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		ra := sar.Spec.ResourceAttributes
		require.NotNil(t, ra)
		sar.Status.Allowed = sar.Spec.User == "alice" && *ra == KubeAttributes
		return true, sar, nil
	})
	return c, &calls
}

func TestKubeAuth(t *testing.T) {
	client, calls := fakeAPIServer(t)
	k := NewKube(client, nil)
	now := time.Unix(1000, 0)
	k.now = func() time.Time { return now }
	srv := httptest.NewServer(RequireAuth(k, API(Options{})))
	defer srv.Close()
	get := func(tok string) int {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/sidecars", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, get("alice-token"))
	assert.Equal(t, http.StatusForbidden, get("bob-token"), "authenticated, not authorized")
	assert.Equal(t, http.StatusUnauthorized, get("forged"))
	assert.Equal(t, http.StatusUnauthorized, get(""))
	n := *calls
	assert.Equal(t, http.StatusOK, get("alice-token"))
	assert.Equal(t, n, *calls, "answers are cached")
	now = now.Add(2 * kubeCacheTTL)
	assert.Equal(t, http.StatusOK, get("alice-token"))
	assert.Greater(t, *calls, n, "and asked again once the cache expires")
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte("short"), 0o600))
	_, err := NewTokenFile(path)
	require.ErrorContains(t, err, "at least 16 characters")
	require.NoError(t, os.WriteFile(path, []byte("  0123456789abcdef\n"), 0o600))
	tf, err := NewTokenFile(path)
	require.NoError(t, err)
	_, err = tf.Authenticate(context.Background(), "0123456789abcdef")
	require.NoError(t, err)
	_, err = tf.Authenticate(context.Background(), "0123456789abcdeX")
	require.ErrorIs(t, err, ErrUnauthenticated)
	_, err = tf.Authenticate(context.Background(), "")
	require.ErrorIs(t, err, ErrUnauthenticated)
}

// The page asks for the token instead of showing a JSON error.
func TestRequireAuthPageShowsSignIn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte("0123456789abcdef"), 0o600))
	tf, err := NewTokenFile(path)
	require.NoError(t, err)
	srv := httptest.NewServer(RequireAuth(tf, API(Options{})))
	defer srv.Close()
	code, hdr, body := get(t, srv.URL+"/")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, hdr.Get("WWW-Authenticate"), "Bearer")
	assert.Contains(t, string(body), `action="/login"`)
}
