package egressguard

# A hand-written policy (ReplaceDefaultPolicy) with two convention breaks:
# a rule without a reason and an allow of a production zone outside an
# exception.
plan := {"default": "allow", "rules": [
	{"id": "zone:*.prod.example.com", "hosts": ["*.prod.example.com"], "action": "deny", "reason": "production zone"},
	{"id": "allow-db", "hosts": ["db.prod.example.com"], "action": "allow"},
]} if input.workload.environment != "production"

plan := {"default": "allow", "rules": []} if input.workload.environment == "production"
