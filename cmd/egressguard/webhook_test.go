package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/internal/testcert"
)

// TestServeWebhook runs serve with the injection webhook on and sends it
// the AdmissionReview of a Deployment's pod, as the API server would: the
// answer is a JSON patch that adds the sidecar, the capture init container
// and dnsguard as the pod's resolver, for this guard's xDS address.
func TestServeWebhook(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.Webhook.Listen = "127.0.0.1:0"
	dir := t.TempDir()
	cert := testcert.Write(t, dir, 1)
	cfg.Webhook.CertFile, cfg.Webhook.KeyFile = testcert.CertFile(dir), testcert.KeyFile(dir)
	cfg.Webhook.DNSServer = "10.96.0.53"
	cfg.Webhook.XDSAddress = "egressguard.egressguard.svc:18000"
	require.NoError(t, cfg.validate())
	other := testcert.Write(t, t.TempDir(), 2) // not the webhook's: must be refused
	addrs := startGuard(t, cfg)
	require.NotNil(t, addrs.Webhook)

	in, err := os.ReadFile("../../inject/testdata/in/deployment-pod.yaml")
	require.NoError(t, err)
	body, err := yaml.YAMLToJSON(in)
	require.NoError(t, err)
	url := "https://" + addrs.Webhook.String() + "/mutate"

	refused, err := testcert.Client(other).Post(url, "application/json", bytes.NewReader(body))
	if err == nil {
		_ = refused.Body.Close()
	}
	require.Error(t, err, "a client that does not trust the webhook's certificate is refused")

	resp, err := testcert.Client(cert).Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))

	var review admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(out, &review))
	require.NotNil(t, review.Response)
	assert.True(t, review.Response.Allowed)
	require.NotNil(t, review.Response.PatchType)
	assert.Equal(t, admissionv1.PatchTypeJSONPatch, *review.Response.PatchType)

	var req admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(body, &req))
	assert.Equal(t, req.Request.UID, review.Response.UID)
	patch, err := jsonpatch.DecodePatch(review.Response.Patch)
	require.NoError(t, err)
	patched, err := patch.Apply(req.Request.Object.Raw)
	require.NoError(t, err)
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(patched, &pod))

	assert.Equal(t, inject.InitContainerName, pod.Spec.InitContainers[0].Name)
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	assert.Contains(t, names, inject.ProxyContainerName)
	assert.Equal(t, corev1.DNSNone, pod.Spec.DNSPolicy)
	require.NotNil(t, pod.Spec.DNSConfig)
	assert.Equal(t, []string{"10.96.0.53"}, pod.Spec.DNSConfig.Nameservers)
	assert.Contains(t, pod.Spec.InitContainers[0].Args, "10.96.0.53/32")
	assert.Equal(t, inject.DefaultInitImageRepository+":"+version, pod.Spec.InitContainers[0].Image)

	code, metrics := httpGet(t, "http://"+addrs.Admin.String()+"/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, metrics, "egressguard_inject_injected_total 1")
}

// TestWebhookConfigErrors: a webhook switched on without what it needs is
// refused at start, with the key or file named.
func TestWebhookConfigErrors(t *testing.T) {
	cfg, err := loadServeConfig("", "webhook.listen=127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorContains(t, cfg.validate(), "webhook.dns_server")

	missing := filepath.Join(t.TempDir(), "tls.crt")
	cfg = testServeConfig(t)
	cfg.Webhook.Listen, cfg.Webhook.DNSServer = "127.0.0.1:0", "10.96.0.53"
	cfg.Webhook.CertFile, cfg.Webhook.KeyFile = missing, missing
	require.NoError(t, cfg.validate())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = serve(ctx, zaptest.NewLogger(t), cfg, nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, missing)
}
