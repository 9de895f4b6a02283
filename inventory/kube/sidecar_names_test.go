package kube_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inventory/kube"
)

// HasSidecar reads the webhook's own names (restated in this package,
// which inject imports).
func TestHasSidecarUsesTheWebhookNames(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{inject.AnnotationInjected: "img"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: inject.ProxyContainerName}}},
	}
	assert.True(t, kube.HasSidecar(p))
}
