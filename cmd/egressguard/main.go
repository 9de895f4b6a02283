// Command egressguard is the one binary of the project: serve, scan, policy
// (eval, test), validate, bootstrap and version. It owns flags and wiring
// only; the behaviour lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			if ec.ExitCode() != 0 && ec.ExitCode() != scanExitFindings {
				fmt.Fprintln(os.Stderr, "egressguard:", err)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "egressguard:", err)
		os.Exit(1)
	}
}
