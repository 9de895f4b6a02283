package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func TestHandler(t *testing.T) {
	rec := NewRecorder(0, 0, nil)
	ring := decisionlog.NewRing(10)
	for _, r := range []decisionlog.Record{
		record(time.Now(), "checkout", "api.stripe.com", 0, plan.ActionDeny, "stripe", false),
		record(time.Now(), "checkout", "api-m.paypal.com", 443, plan.ActionRedirect, "paypal", false),
	} {
		rec.Log(r)
		ring.Log(r)
	}
	var ready atomic.Bool
	srv := httptest.NewServer(Handler(Options{
		Ready:     func() bool { return ready.Load() },
		Policy:    func() policy.Status { return policy.Status{Version: "v1", LastError: "policy/x.rego:3: parse error"} },
		Decisions: ring,
		Recorder:  rec,
		Decide: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"dest": r.URL.Query().Get("dest")})
		}),
	}, nil))
	defer srv.Close()

	code, _, _ := get(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	ready.Store(true)
	code, _, _ = get(t, srv.URL+"/readyz")
	assert.Equal(t, http.StatusOK, code)

	code, hdr, body := get(t, srv.URL+"/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, hdr.Get("Content-Type"), "text/html")
	assert.Contains(t, string(body), "Denied and redirected attempts")
	// Offline: nothing is loaded from anywhere but the admin port.
	assert.Empty(t, regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindAllString(string(body), -1))
	assert.NotContains(t, string(body), "@import")

	var att struct {
		Attempts []Attempt `json:"attempts"`
	}
	code, _, body = get(t, srv.URL+"/api/attempts?limit=1")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &att))
	require.Len(t, att.Attempts, 1)

	var cnt Counts
	code, _, body = get(t, srv.URL+"/api/counts")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &cnt))
	assert.Equal(t, uint64(2), cnt.Total)
	assert.Len(t, cnt.Rules, 2)

	var sc struct {
		Enabled bool              `json:"xds_enabled"`
		Nodes   []json.RawMessage `json:"nodes"`
	}
	code, _, body = get(t, srv.URL+"/api/sidecars")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal(body, &sc))
	assert.False(t, sc.Enabled)
	assert.NotNil(t, sc.Nodes, "an empty list, not null")

	code, _, body = get(t, srv.URL+"/api/policy")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), "policy/x.rego:3")

	code, _, body = get(t, srv.URL+"/api/decisions?limit=5")
	require.Equal(t, http.StatusOK, code)
	var recs []map[string]any
	require.NoError(t, json.Unmarshal(body, &recs))
	assert.Len(t, recs, 2)

	code, _, body = get(t, srv.URL+"/api/decide?dest=api.stripe.com")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), "api.stripe.com")

	code, _, _ = get(t, srv.URL+"/metrics")
	assert.Equal(t, http.StatusNotFound, code, "no registry: no /metrics")
}
