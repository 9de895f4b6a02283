package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUsageErrorsExit2: every command, reached as a user types it, exits
// exitUsage (2, as the root's help says) on an unknown flag, and every
// command that takes no or few arguments on too many: never 1, which
// means findings, a failed check or a policy that does not load.
func TestUsageErrorsExit2(t *testing.T) {
	require.Equal(t, 2, exitUsage)
	require.Equal(t, diffExitUsage, exitUsage, "policy diff documents 2 for usage errors")
	require.Equal(t, scanExitError, exitUsage, "scan documents 2 for what it cannot run")
	root := newRootCmd()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(root, nil)
	require.Greater(t, len(paths), 10)
	for _, p := range paths {
		name := "egressguard " + strings.Join(p, " ")
		t.Run(name, func(t *testing.T) {
			out, err := runCLI(t, append(append([]string{}, p...), "--no-such-flag")...)
			require.Error(t, err, out)
			assert.Equal(t, exitUsage, exitCode(err), "%s --no-such-flag: %v", name, err)
			assert.Contains(t, err.Error(), "unknown flag: --no-such-flag")
		})
	}
	for _, args := range [][]string{
		{"policy", "diff", "--base", ".", "--head", ".", "extra"}, // cobra.NoArgs
		{"policy", "lint", "a", "b"},                              // MaximumNArgs(1)
		{"version", "extra"},
		{"policy", "evl"},
		{"polcy"},
		{"serve", "--admin-listen"}, // a flag without its value
	} {
		out, err := runCLI(t, args...)
		require.Error(t, err, "%v: %s", args, out)
		assert.Equal(t, exitUsage, exitCode(err), "%v: %v", args, err)
	}
}
