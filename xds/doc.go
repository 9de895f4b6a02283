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
//
// # Import aliases
//
// Envoy API packages are always imported as <last meaningful path element>v3:
// corev3, listenerv3, routev3, clusterv3, endpointv3, hcmv3, tcpproxyv3,
// rbacv3 (config/rbac), netrbacv3 (network RBAC filter), httpfaultv3,
// faultcommonv3, routerv3, tlsinspectorv3, httpinspectorv3, origdstv3,
// tlsv3, fileaccesslogv3, accesslogv3, celfilterv3, discoveryv3,
// bootstrapv3, matcherv3, typev3.
package xds
