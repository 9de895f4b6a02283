package egressguard

allowed   if {   input.x == 1 }
