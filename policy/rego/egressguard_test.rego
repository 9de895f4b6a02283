# Unit tests of the default policy against a small fixture catalog (they do
# not depend on the shipped catalog's content). Run with
# `egressguard policy test` or `go test ./policy -run TestRegoUnitTests`.
package egressguard_test

import data.egressguard

fixture := {
	"environments": {
		"production": ["production", "prod"],
		"non_production": ["staging", "dev"],
		"report": ["dev"],
	},
	"zones": ["*.prod.example.com", "billing.example.com"],
	"cidrs": ["10.20.0.0/16", "2001:db8:100::/48"],
	"mail_sink": {"host": "mailpit.staging.svc.cluster.local", "port": 1025},
	"providers": [
		{"name": "paypal", "category": "payment", "endpoints": [
			{"live": "api-m.paypal.com", "sandbox": {"host": "api-m.sandbox.paypal.com", "port": 443, "tls": true}},
			{"live": "*.paypal.com"},
		]},
		{"name": "smtp-submission", "category": "email", "endpoints": [{"ports": [25, 587], "sink": true}]},
		{"name": "sendgrid", "category": "email", "endpoints": [{"live": "smtp.sendgrid.net", "ports": [587]}]},
	],
	"exceptions": [
		{
			"id": "checkout-prod-read", "workload": {"environment": "staging", "labels": {"app": "checkout"}},
			"hosts": ["*.prod.example.com"], "expires": "2099-12-31", "owner": "alice@example.com",
			"ticket": "SEC-1", "reason": "read-only replica test",
		},
		{
			"id": "payments-paypal", "workload": {"namespace": "payments", "labels": {"team": "pay"}},
			"hosts": ["*.paypal.com"], "expires": "2099-12-31", "owner": "bob@example.com", "ticket": "SEC-2",
		},
		{
			"id": "mailer-everything", "workload": {"name": "mailer"},
			"hosts": ["*"], "expires": "2099-12-31", "owner": "carol@example.com", "ticket": "SEC-3",
		},
		{
			"id": "ops-prod-net", "workload": {"labels": {"app": "ops"}},
			"cidrs": ["10.0.0.0/8"], "ports": [5432], "expires": "2099-12-31", "owner": "dan@example.com", "ticket": "SEC-4",
		},
	],
}

web := {"environment": "staging", "name": "web", "namespace": "shop", "labels": {"app": "web"}}

decide(w, dest) := d if {
	d := egressguard.decision with input as {"workload": w, "destination": dest}
		with data.catalog as fixture
}

plan_for(w) := p if {
	p := egressguard.plan with input as {"workload": w} with data.catalog as fixture
}

test_production_allows_everything if {
	p := plan_for({"environment": "production"})
	p.default == "allow"
	p.rules == []
	not p.include
	d := decide({"environment": "Prod"}, {"host": "api-m.paypal.com", "port": 443})
	d.action == "allow"
	d.rule == "default"
}

test_unknown_environment_is_guarded if {
	p := plan_for({"environment": "perf-lab"})
	p.include == ["catalog"]
	d := decide({"environment": "perf-lab"}, {"host": "api-m.paypal.com", "port": 443})
	d.action == "redirect"
}

test_paypal_live_redirects_to_sandbox if {
	d := decide(web, {"host": "api-m.paypal.com", "port": 443})
	d.action == "redirect"
	d.rule == "provider:paypal:api-m.paypal.com"
	d.redirect == {"host": "api-m.sandbox.paypal.com", "port": 443, "tls": true}
	contains(d.reason, "must use the paypal sandbox api-m.sandbox.paypal.com:443")
	d.category == "payment"
}

test_name_case_and_trailing_dot_are_ignored if {
	d := decide(web, {"host": "API-M.PayPal.com.", "port": 443})
	d.rule == "provider:paypal:api-m.paypal.com"
}

test_other_live_hosts_are_denied if {
	d := decide(web, {"host": "www.paypal.com", "port": 443})
	d.action == "deny"
	d.rule == "provider:paypal:*.paypal.com"
}

# Provider and exception wildcards match strict subdomains only; a zone
# "*.X" under zones: is the zone X, apex included.
test_wildcard_matches_strict_subdomains_only if {
	decide(web, {"host": "paypal.com", "port": 443}).rule == "default"
	decide(web, {"host": "a.b.prod.example.com"}).rule == "zone:*.prod.example.com"
}

test_zone_includes_its_apex if {
	d := decide(web, {"host": "prod.example.com"})
	d.action == "deny"
	d.rule == "zone:*.prod.example.com"
	contains(d.reason, "apex prod.example.com included")
	decide(web, {"host": "example.com"}).rule == "default"
}

# A host rule filtered to name-blind ports only (SMTP) is decided by DNS
# as if on its port; "*" on those ports stays with the sidecar.
test_dns_held_rule_applies_at_dns_only if {
	r := {"id": "mx", "hosts": ["mail.example.org", "*"], "ports": [25, 587], "action": "deny"}
	p := {"default": "allow", "rules": [r]}
	egressguard.decision.rule == "mx" with egressguard.plan as p with data.catalog as fixture with input as {"workload": web, "destination": {"host": "mail.example.org", "protocol": "dns"}}
	egressguard.decision.rule == "default" with egressguard.plan as p with data.catalog as fixture with input as {"workload": web, "destination": {"host": "mail.example.org"}}
	egressguard.decision.rule == "default" with egressguard.plan as p with data.catalog as fixture with input as {"workload": web, "destination": {"host": "other.example.org", "protocol": "dns"}}
	egressguard.decision.rule == "mx" with egressguard.plan as p with data.catalog as fixture with input as {"workload": web, "destination": {"host": "other.example.org", "port": 25}}
	egressguard.decision.rule == "default" with egressguard.plan as p with data.catalog as fixture with input as {"workload": web, "destination": {"host": "mail.example.org", "port": 443}}
}

test_production_zones_are_denied if {
	d := decide(web, {"host": "db.prod.example.com", "port": 5432})
	d.action == "deny"
	d.rule == "zone:*.prod.example.com"
	decide(web, {"host": "billing.example.com"}).rule == "zone:billing.example.com"
	decide(web, {"host": "www.example.com"}).action == "allow"
}

test_production_networks_are_denied if {
	d := decide(web, {"ip": "10.20.3.4", "port": 443})
	d.action == "deny"
	d.rule == "cidr:10.20.0.0/16"
	decide(web, {"ip": "2001:db8:100::7"}).rule == "cidr:2001:db8:100::/48"
	decide(web, {"ip": "10.21.0.1", "port": 443}).rule == "default"
}

test_host_rules_come_before_cidr_rules if {
	decide(web, {"host": "db.prod.example.com", "ip": "192.0.2.1"}).rule == "zone:*.prod.example.com"
	decide(web, {"host": "unlisted.example.org", "ip": "10.20.0.9"}).rule == "cidr:10.20.0.0/16"
}

test_smtp_goes_to_the_mail_sink if {
	d := decide(web, {"host": "smtp.gmail.com", "port": 587})
	d.action == "redirect"
	d.rule == "provider:smtp-submission:*:25,587"
	d.redirect.host == "mailpit.staging.svc.cluster.local"
	d.redirect.port == 1025
	decide(web, {"ip": "198.51.100.7", "port": 25}).rule == "provider:smtp-submission:*:25,587"
}

test_dns_has_no_port_so_port_filters_do_not_match if {
	decide(web, {"host": "smtp.gmail.com"}).rule == "default"
}

test_port_filtered_exact_rule_beats_wildcard if {
	decide(web, {"host": "smtp.sendgrid.net", "port": 587}).rule == "provider:sendgrid:smtp.sendgrid.net:587"
	decide(web, {"host": "smtp.sendgrid.net", "port": 25}).rule == "provider:smtp-submission:*:25,587"
}

test_smtp_without_a_mail_sink_is_denied if {
	d := egressguard.decision with input as {"workload": web, "destination": {"host": "smtp.gmail.com", "port": 25}}
		with data.catalog as object.remove(fixture, ["mail_sink"])
	d.action == "deny"
	contains(d.reason, "no mail_sink")
}

test_exception_applies_to_its_workloads_only if {
	checkout := {"environment": "staging", "labels": {"app": "checkout"}}
	d := decide(checkout, {"host": "db.prod.example.com", "port": 5432})
	d.action == "allow"
	d.rule == "exception:checkout-prod-read"
	contains(d.reason, "SEC-1")
	decide(web, {"host": "db.prod.example.com"}).action == "deny"
	decide({"environment": "qa", "labels": {"app": "checkout"}}, {"host": "db.prod.example.com"}).action == "deny"
}

test_exception_wildcard_covers_more_specific_catalog_patterns if {
	payments := {"environment": "staging", "namespace": "payments", "labels": {"team": "pay"}}
	d := decide(payments, {"host": "api-m.paypal.com", "port": 443})
	d.action == "allow"
	d.rule == "exception:payments-paypal:api-m.paypal.com"
	decide(payments, {"host": "www.paypal.com"}).rule == "exception:payments-paypal"
}

test_exception_restates_port_filtered_catalog_rules if {
	mailer := {"environment": "staging", "name": "mailer"}
	decide(mailer, {"host": "smtp.gmail.com", "port": 25}).rule == "exception:mailer-everything:*:25,587"
	decide(mailer, {"host": "smtp.sendgrid.net", "port": 587}).rule == "exception:mailer-everything:smtp.sendgrid.net:587"
	decide(mailer, {"host": "db.prod.example.com"}).action == "allow"
}

test_exception_cidr_covers_longer_catalog_prefixes if {
	ops := {"environment": "staging", "labels": {"app": "ops"}}
	decide(ops, {"ip": "10.20.1.1", "port": 5432}).rule == "exception:ops-prod-net:10.20.0.0/16:5432"
	decide(ops, {"ip": "10.20.1.1", "port": 443}).rule == "cidr:10.20.0.0/16"
}

test_report_mode_allows_and_records if {
	d := decide({"environment": "dev"}, {"host": "www.paypal.com", "port": 443})
	d.action == "allow"
	d.matched_action == "deny"
	d.would_deny == true
	not d.redirect
}

test_class_is_environment_plus_selector_labels if {
	egressguard.class_labels == ["app", "team"] with data.catalog as fixture
	egressguard.class_fields == ["name", "namespace"] with data.catalog as fixture
}

test_rulesets_are_catalog_wide if {
	names := {n | some n, _ in egressguard.rulesets} with data.catalog as fixture
	names == {"catalog", "catalog:sidecar", "exception:checkout-prod-read", "exception:payments-paypal", "exception:mailer-everything", "exception:ops-prod-net"}
	rules := egressguard.rulesets.catalog with data.catalog as fixture
	ids := [r.id | some r in rules]
	ids[0] == "provider:paypal:api-m.paypal.com"
	count({id | some id in ids}) == count(ids)
}

test_plan_names_matching_exception_rulesets if {
	p := plan_for({"environment": "staging", "labels": {"app": "checkout"}})
	p.overlay_include == ["exception:checkout-prod-read"]
	p.mode == "enforce"
	plan_for(web).overlay_include == []
}

test_one_label_names if {
	decide(web, {"host": "localhost", "port": 80}).rule == "default"
	decide(web, {"host": "com"}).rule == "default"
}

# ------------------------------------------------------ request-level rules

request_fixture := object.union(fixture, {"providers": array.concat(fixture.providers, [{
	"name": "acme-pay", "category": "payment", "accounts": ["ACprod"],
	"requests": {
		"rules": [
			{"id": "prod", "for_each_account": true, "path": {"prefix": "/accounts/{account}", "ignore_case": true}, "action": "deny", "credential": "acme-account"},
			{"id": "live-user", "headers": [{"name": "authorization", "basic_user": {"prefix": "live_"}}], "action": "deny", "credential": "acme-live-key"},
			{"id": "test", "methods": ["post"], "headers": [{"name": "x-key", "value": {"regex": "test_[a-z]+"}}, {"name": "x-admin", "absent": true}], "action": "allow"},
			{"id": "sandbox", "path": {"exact": "/pay"}, "action": "redirect", "sandbox": {"host": "sandbox.acme.example", "port": 443, "tls": true}},
		],
		"default": {"action": "deny"},
	},
	"endpoints": [{"live": "api.acme.example"}],
}])})

request_decide(w, req) := d if {
	d := egressguard.request_decision with input as {"workload": w, "destination": {"host": "api.acme.example", "port": 443}, "request": req}
		with data.catalog as request_fixture
}

sidecar_web := object.union(web, {"sidecar": true})

test_request_rules_only_for_sidecar_classes if {
	rules := egressguard.rulesets["catalog:sidecar"] with data.catalog as request_fixture
	some r in rules
	r.id == "provider:acme-pay:api.acme.example"
	r.action == "allow"
	[x.id | some x in r.requests.rules] == ["prod#0", "live-user", "test", "sandbox"]
	r.requests.rules[0].path.prefix == "/accounts/ACprod"
	r.requests.rules[2].methods == ["POST"]
	r.requests.default.action == "deny"
	plain := egressguard.rulesets.catalog with data.catalog as request_fixture
	some q in plain
	q.id == "provider:acme-pay:api.acme.example"
	q.action == "deny"
	not q.requests
}

test_request_fallback_is_configurable if {
	cat := object.union(request_fixture, {"request_rules_fallback": "allow"})
	plain := egressguard.rulesets.catalog with data.catalog as cat
	some q in plain
	q.id == "provider:acme-pay:api.acme.example"
	q.action == "allow"
}

test_request_decision_first_match_and_default if {
	request_decide(sidecar_web, {"method": "POST", "path": "/Accounts/acprod/x", "headers": {}}).request_rule == "prod#0"
	d := request_decide(sidecar_web, {"method": "POST", "path": "/x", "headers": {"x-key": "test_abc"}})
	d.action == "allow"
	d.request_rule == "test"
	request_decide(sidecar_web, {"method": "POST", "path": "/x", "headers": {"x-key": "test_abc", "x-admin": "1"}}).request_rule == "provider:acme-pay:api.acme.example/default"
	request_decide(sidecar_web, {"method": "GET", "path": "/x", "headers": {"x-key": "test_abc"}}).action == "deny"
	r := request_decide(sidecar_web, {"method": "GET", "path": "/pay", "headers": {}})
	r.action == "redirect"
	r.redirect.host == "sandbox.acme.example"
}

test_request_decision_basic_user if {
	# "live_key:" and "live_key" (no colon: all user), standard and URL alphabet.
	request_decide(sidecar_web, {"method": "GET", "path": "/x", "headers": {"authorization": "Basic bGl2ZV9rZXk6"}}).credential == "acme-live-key"
	request_decide(sidecar_web, {"method": "GET", "path": "/x", "headers": {"authorization": "basic bGl2ZV9rZXk"}}).request_rule == "live-user"
	request_decide(sidecar_web, {"method": "GET", "path": "/x", "headers": {"authorization": "Bearer bGl2ZV9rZXk6"}}).request_rule == "provider:acme-pay:api.acme.example/default"
}

test_request_decision_malformed_path_and_no_sidecar if {
	request_decide(sidecar_web, {"method": "GET", "headers": {}}).request_rule == "malformed-path"
	d := request_decide(web, {"method": "POST", "path": "/x", "headers": {"x-key": "test_abc"}})
	d.action == "deny"
	not d.request_rule
}

test_request_decision_report_mode if {
	d := request_decide(object.union(sidecar_web, {"environment": "dev"}), {"method": "GET", "path": "/x", "headers": {}})
	d.action == "allow"
	d.would_deny == true
	d.matched_action == "deny"
}
