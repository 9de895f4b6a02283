package policy

import "strings"

// ZoneHosts is what a catalog zone covers, as host patterns with strict
// wildcard semantics: "*.X" is the zone X, apex included (the Rego
// library's zone_hosts, which builds the zone rules), any other zone only
// itself. Code that reads catalog zones outside the plans (the secrets
// scanner) calls this instead of matching zones itself.
func ZoneHosts(zone string) []string {
	if apex, ok := strings.CutPrefix(zone, "*."); ok {
		return []string{zone, apex}
	}
	return []string{zone}
}
