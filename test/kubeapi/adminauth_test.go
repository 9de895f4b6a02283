package kubeapi

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressguard/egressguard/internal/admin"
)

// checkAdminAuth: the admin API's Kubernetes authenticator, running with the
// chart's ServiceAccount (so the chart's RBAC is what lets it review), lets
// a caller through only when the API server authenticates its token and
// RBAC allows it "get adminapi.egressguard.io", which the chart's
// admin-reader ClusterRole grants.
func checkAdminAuth(ctx context.Context, t *testing.T, c *cluster) {
	for _, name := range []string{"admin-reader", "someone"} {
		_, err := c.client.CoreV1().ServiceAccounts(releaseNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-admin-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: releaseName + "-admin-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "admin-reader", Namespace: releaseNS}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	token := func(sa string) string {
		exp := int64(600)
		tr, err := c.client.CoreV1().ServiceAccounts(releaseNS).CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}

	chartSA := c.impersonate(t, "system:serviceaccount:"+releaseNS+":"+releaseName, "system:serviceaccounts", "system:serviceaccounts:"+releaseNS, "system:authenticated")
	k := admin.NewKube(chartSA, nil)

	user, err := k.Authenticate(ctx, token("admin-reader"))
	require.NoError(t, err, "bound to the admin-reader ClusterRole")
	assert.Equal(t, "system:serviceaccount:"+releaseNS+":admin-reader", user)

	_, err = k.Authenticate(ctx, token("someone"))
	require.ErrorIs(t, err, admin.ErrForbidden, "authenticated, but RBAC does not allow it")

	_, err = k.Authenticate(ctx, "not-a-token")
	require.ErrorIs(t, err, admin.ErrUnauthenticated)
}
