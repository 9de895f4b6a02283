// Package xds is egressguard's Envoy control plane: it translates a compiled
// plan.Plan into Envoy resources (pure functions, golden-tested), keeps one
// validated snapshot per node in its own cache, and serves it over ADS (state
// of the world and delta) and the separate xDS services.
//
// # Two kinds of clients
//
//   - Envoy sidecars (node.user_agent_name "envoy") get one outbound listener
//     (TranslateSidecar): filter chains by destination port, destination IP
//     (CIDR rules), SNI (TLS) and transport, plaintext HTTP routed by Host.
//   - Proxyless gRPC clients (every other user agent) ask for listeners by
//     target name ("xds:///api.example.com:443"); each requested target gets an
//     api_listener, a route configuration, and EDS or LOGICAL_DNS clusters
//     (TranslateProxyless), decided with plan.Decide for exactly that target.
//     A redirect to a TLS sandbox uses TLS with the system roots and the
//     sandbox's name as SNI and accepted certificate name (grpcSandboxTLS);
//     a deny aborts with PERMISSION_DENIED and grpc-go's fixed message (the
//     README says why the rule cannot ride along). GRPCBootstrap writes such
//     a client's bootstrap; a client in a pod announces the proxyless form
//     of its pod's node ID (ProxylessNodePrefix), resolved through the pod's
//     sidecar ID.
//
// # Sidecar layout, and where it departs from plan.Decide
//
// Envoy picks a filter chain by destination port, then destination IP,
// then SNI, then transport, and only then routes HTTP by Host; plan.Decide
// lets host rules beat CIDR rules. The listener therefore has one "cell" of
// chains per (destination port some rule names, or any other port) ×
// (CIDR rule's prefixes, or every other address). To keep the config small
// when a plan has thousands of host rules:
//
//   - Plaintext HTTP: the chains of every cell share one route
//     configuration ("http"), or one per port ("http|port=443") when that
//     is smaller (port-specific host rules over many distinct CIDR rules).
//     What differs by cell (the CIDR rule or default that decides a name no
//     host rule lists) is routed on CellHeader, which each chain's HTTP
//     connection manager writes before routing (early header mutation,
//     overwriting the client's) and the route configuration strips before
//     forwarding; a cell-routed virtual host ends in a fail-closed deny.
//     HTTP decisions, rule attribution included, equal plan.Decide's.
//   - TLS: each cell lists the SNI names of the host table per verdict
//     class; in a CIDR cell a name whose class equals the cell's no-SNI
//     verdict is left out (same action) unless a listed wildcard of another
//     class encloses it. Such a connection is logged under the CIDR rule
//     rather than the host rule (the action is the same); outside CIDR
//     cells every name is listed. TLS redirect is a deny (DESIGN.md).
//   - The virtual host of a rule is built, validated (ValidateAll and every
//     Any inside) and marshalled once per policy version and shared by
//     every class whose plan has that rule (the shared base layer); route
//     configurations are assembled from those bytes. Snapshots keep only
//     the wire form; every node of a class shares its class's snapshot.
//
// # HTTPS interception (intercept.go)
//
// A host rule the plan intercepts (plan.Plan.Intercepts: request-level
// rules, or a redirect to a TLS sandbox) gets, when the enforcer has a
// staging CA (WithCertificates), one filter chain per host pattern in
// every cell of port 443 and of the ports no rule names (interceptPort),
// matching the pattern as SNI with transport "tls", instead of a place in
// the SNI chains; on other named ports the name stays in the SNI chains
// (denied). With the default catalog that is 41 intercepted rules and a
// listener of 444 KiB instead of 155 KiB without a CA (`go test -v -run
// TestInterceptThroughCatalog ./xds/` logs both). The chain terminates TLS with the
// pattern's leaf, an SDS Secret ("egressguard-intercept~<pattern>")
// fetched on the same ADS stream and present only in the snapshots of
// classes that intercept the pattern, offers h2 and http/1.1, and routes
// with the rule's own route configuration ("intercept|<rule id>"): one
// route per request rule in the plan's order, then the policy's default,
// then a catch-all that denies a Host outside the rule's names. Envoy
// normalises the path first (pathNormalisation) so routes see
// plan.NormalizePath's form; a condition on the user of Basic credentials
// is compiled into a regular expression over the base64 text
// (basicuser.go). Allowed requests leave for the original destination
// over TLS, SNI and accepted certificate name taken from the Host, checked
// against the system roots; redirects go to the sandbox cluster. Access
// logs name the route ("<action>|<request rule id>"), never a request
// header. The CA's Changes() rebuilds the intercepting classes, so a
// rotation reaches every node as an SDS push.
//
// Paths: the connection manager refuses escaped slashes, a NUL and a
// fragment itself (400, before any route, report mode or not: fail
// closed); the first routes of a rule with request rules deny what
// plan.NormalizePath refuses beyond that (not in origin form, an invalid
// escape, a dot segment with parameters). Nested escapes, which Envoy's
// canonicaliser rewrites (CheckForNestedEscapes) and may turn into a valid
// escape, are the one known case where Envoy may route a path the plan
// refuses.
//
// Without a staging CA a request-level rule is a deny chain that says
// interception is not configured, and a TLS redirect stays a deny. Where
// requests cannot be seen (plaintext HTTP, proxyless gRPC) a request-level
// rule denies (verdictOf). The debug API shows secrets by name and
// version only.
//
// # Serving many sidecars
//
// Every node of a class shares its class's snapshot, whose resources are
// marshalled once. The gRPC server's codec (wireCodec) writes a discovery
// response as its small per-stream envelope followed by references to
// those shared bytes, so a push to 1,000 nodes copies no resource bytes
// in user space (the stock codec re-marshals each resource per stream).
// Rebuild publishes each class's snapshot as soon as that class is built,
// so pushes start while later classes are still building.
//
// # Publication: a node never goes back, no subscription is lost
//
// A node's configuration is built by its first stream, by each new target
// a proxyless stream asks for, and by every Rebuild, concurrently and
// outside the enforcer's lock. Every build takes a generation number (one
// counter for the whole enforcer, only moving forward) together with the
// node's targets, under the lock, and reads inventory and policy only
// after that; targets only grow and inventory and policy only move
// forward, so a build of a higher generation read inputs at least as new.
// Builds are settled (Enforcer.settle, the one place that publishes) in
// generation order:
//
//   - Monotonic per node: a build older than one already settled for the
//     node is dropped (counted in dropped_builds_total), so a node is never
//     handed the configuration of an older policy, inventory or target
//     list, whatever order the builds finish in.
//   - No lost subscription: a target recorded for a node starts a build
//     that reads it; that build, or a newer one (which read a superset of
//     the targets), settles, so every name subscribed at any time, during a
//     rebuild included, is answered by that one build.
//   - A node keeps its last good config (keepLastGood): a failed build
//     publishes nothing and leaves its error on the admin view.
//
// Several streams with one node ID (grpc-go opens one per channel) are one
// node: one snapshot holding the union of their targets, each stream sent
// the names it subscribed to, shown once with its stream count.
//
// # Import aliases
//
// Envoy API packages are always imported as <last meaningful path element>v3:
// corev3, listenerv3, routev3, clusterv3, endpointv3, hcmv3, tcpproxyv3,
// rbacv3 (config/rbac), netrbacv3 (network RBAC filter), httpfaultv3,
// faultcommonv3, routerv3, tlsinspectorv3, httpinspectorv3, origdstv3,
// tlsv3, fileaccesslogv3, accesslogv3, celfilterv3, discoveryv3,
// bootstrapv3, matcherv3, typev3, mutationrulesv3, earlyhmv3 (early header
// mutation), upstreamhttpv3 (upstream HTTP protocol options).
package xds
