package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// browserWait bounds every step of the browser test.
const browserWait = 30 * time.Second

// findChromium returns Debian's chromium, or skips the test naming what is
// missing (`make test` installs it first where it can: `make test-deps`).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("admin page browser test skipped: chromium not found (/usr/bin/chromium or chromium on PATH); " +
		"install it with `make test-deps` (apt-get install chromium, as root)")
	return ""
}

// TestAdminPageInBrowser runs the real guard, opens its admin page in
// headless chromium, makes a DNS query that is denied, waits for it to
// appear on the page and uses the search box.
func TestAdminPageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	cfg := testServeConfig(t)
	cfg.Decisions.File = "/dev/full" // every decision-record write fails: the page must say so
	// The example catalog lists a host-network opt-out; identity in report
	// mode records the sidecar below (10.1.2.3 in its node ID, 127.0.0.1
	// on the wire) as a would-deny and still serves it.
	cfg.Policy.Catalogs = []string{"../../deploy/examples/catalog.yaml"}
	require.NoError(t, applySet(&cfg, "xds.identity.mode=report"))
	addrs := startGuard(t, cfg)
	page := "http://" + addrs.Admin.String() + "/"

	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	// The first Do starts the browser and binds its life to bctx, so it
	// must not carry a timeout: bound it from outside instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err := <-started:
		require.NoError(t, err, "start chromium (%s)", chromium)
	case <-time.After(browserWait):
		bcancel()
		acancel()
		t.Fatalf("chromium (%s) did not start within %s", chromium, browserWait)
	}
	// step runs browser actions within browserWait.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, browserWait)
		defer scancel()
		require.NoError(t, chromedp.Do(sctx, actions...), what)
	}
	// text reads an element's text (sel: XPath if it starts with "/", else
	// CSS) within browserWait. The page re-renders every 2 s, replacing its
	// nodes, so the lookup and the read happen in one script in the page:
	// reading a node found by an earlier query could find it gone.
	text := func(sel string) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, browserWait)
		defer scancel()
		js := fmt.Sprintf(`(() => {
			const s = %q;
			const n = s.startsWith("/")
				? document.evaluate(s, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue
				: document.querySelector(s);
			return n ? n.innerText : "";
		})()`, sel)
		s, err := chromedp.Run(sctx, chromedp.Poll[string](js))
		require.NoError(t, err, "read %s", sel)
		return s
	}
	step("load the admin page",
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`#live.ok`)),
		chromedp.WaitVisible(`//section[.//h2[text()="Policy"]]//dd[contains(@class,"mono")]`),
	)

	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("api.stripe.com.", dns.TypeA)
	r, _, err := c.Exchange(m, addrs.DNS.String())
	require.NoError(t, err)
	require.Equal(t, dns.RcodeNameError, r.Rcode, "api.stripe.com is denied in staging")

	const stripeRow = `//div[@id="attempts"]//tr[td[contains(., "api.stripe.com")]]`
	step("the denied query appears on the page", chromedp.WaitVisible(stripeRow))
	row := text(stripeRow)
	assert.Contains(t, row, "deny")
	assert.Contains(t, row, "provider:stripe:api.stripe.com")
	step("the failed decision-record write is on the page",
		chromedp.WaitVisible(`//div[@id="decisionlog"]//div[@class="error"][contains(., "no space left on device")]`))
	step("the counts chart it",
		chromedp.WaitVisible(`//div[@id="by-rule"]//tr[td[contains(., "provider:stripe:api.stripe.com")]]//*[local-name()="svg"]`),
	)

	step("search api-m.paypal.com:443",
		chromedp.SetValue(chromedp.CSS(`#workload`), "env=staging,app=checkout"),
		chromedp.SetValue(chromedp.CSS(`#dest`), "api-m.paypal.com:443"),
		chromedp.Click(chromedp.CSS(`#decide-btn`)),
		chromedp.WaitVisible(chromedp.CSS(`#verdict`)),
	)
	verdict := text(`#verdict`)
	assert.Contains(t, verdict, "redirect")
	assert.Contains(t, verdict, "api-m.paypal.com:443")

	const planTable = `//table[@id="plan-table"]`
	step("show the staging plan",
		chromedp.SetValue(chromedp.CSS(`#plan-workload`), "env=staging"),
		chromedp.Click(chromedp.CSS(`#plan-btn`)),
		chromedp.WaitVisible(`//div[@id="plan-summary"]//b[contains(., "staging")]`),
		chromedp.WaitVisible(planTable+`//tr[td[1][contains(., "stripe.com")]]`),
	)
	assert.Regexp(t, `^\d+ rules, \d+ patterns$`, text(`#plan-count`))
	step("filter it for paypal",
		chromedp.SendKeys(chromedp.CSS(`#plan-filter`), "paypal"),
		chromedp.WaitNotPresent(planTable+`//tr[td[1][contains(., "stripe.com")]]`),
	)
	const paypalRow = planTable + `//tr[@class="a-redirect"][td[1][normalize-space()="api-m.paypal.com"]]`
	step("the PayPal redirect row is there", chromedp.WaitVisible(paypalRow))
	prow := text(paypalRow)
	assert.Contains(t, prow, "redirect")
	assert.Equal(t, "api-m.sandbox.paypal.com:443", text(paypalRow+`/td[6]`), "the redirect target column")
	assert.Contains(t, text(`#plan-count`), "match “paypal”")

	// A real sidecar: an ADS stream that NACKs the listeners it gets.
	conn, err := grpc.NewClient(addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	xctx, xcancel := context.WithTimeout(context.Background(), browserWait)
	defer xcancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(xctx)
	require.NoError(t, err)
	node := &corev3.Node{Id: "sidecar~10.1.2.3~checkout.payments~payments.svc.cluster.local", UserAgentName: "envoy"}
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}))
	resp, err := ads.Recv()
	require.NoError(t, err)
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType,
		ResponseNonce: resp.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "listener rejected by the browser test"}}))
	const sidecarRow = `//div[@id="sidecars"]//tr[td[contains(., "checkout.payments")]]`
	step("the sidecar and its NACK appear", chromedp.WaitVisible(sidecarRow+`[td[contains(., "listener rejected by the browser test")]]`))
	assert.Contains(t, text(sidecarRow), resp.VersionInfo, "the config version served")
	const identityRow = `//div[@id="identity"]//tr[td[contains(., "checkout.payments")]]`
	step("its unproven node ID appears as a would-deny", chromedp.WaitVisible(identityRow+`[td[contains(., "would-deny")]]`))
	irow := text(identityRow)
	assert.Contains(t, irow, "127.0.0.1", "the peer")
	assert.Contains(t, irow, "the connection comes from 127.0.0.1", "the reason")
	const optOutRow = `//div[@id="optouts"]//tr[td[1][contains(., "node-exporter")]]`
	step("the catalog's host-network opt-out is listed", chromedp.WaitVisible(optOutRow))
	orow := text(optOutRow)
	for _, want := range []string{"monitoring", "node-exporter-*", "app=node-exporter", "observability-team@example.com", "OPS-1234", "2027-02-28"} {
		assert.Contains(t, orow, want)
	}

	sctx, scancel := context.WithTimeout(bctx, browserWait)
	defer scancel()
	shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	require.NoError(t, err, "screenshot")
	path := filepath.Join(t.TempDir(), "admin.png")
	if p := os.Getenv("EGRESSGUARD_ADMIN_SCREENSHOT"); p != "" {
		path = p
	}
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	t.Logf("screenshot: %s", path)

	// Plans larger than the page renders: 500 rows and an "N more" line.
	step("render a 620-pattern plan",
		chromedp.Evaluate[chromedp.Void](`$("plan-filter").value = ""; planData = {class: "big{}", default: "deny", mode: "enforce", fingerprint: "f",
			entries: Array.from({length: 620}, (_, i) => ({kind: "host", pattern: "h" + i + ".example", rule: "r" + i, action: "allow"}))};
			renderPlan();`),
		chromedp.WaitVisible(`//div[@class="more"][contains(., "120 more")]`),
	)
	rendered, err := chromedp.Run(sctx, chromedp.Evaluate[int](`document.querySelectorAll("#plan-table tbody tr").length`))
	require.NoError(t, err)
	assert.Equal(t, 500, rendered)
	assert.Equal(t, "620 rules, 620 patterns", text(`#plan-count`))
}
