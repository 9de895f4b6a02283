package egressguard

extra_rule if {
	input.workload.environment ==
}
