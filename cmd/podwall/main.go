// Command podwall answers questions about Kubernetes NetworkPolicy offline,
// from manifests: who can reach whom (reach), why (explain), and what is
// wrong with the policies (lint).
//
// Exit status: 0 on success, 1 when a command found what it checks for
// (lint: an error finding), 2 on bad input or usage, 130 when interrupted.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run()) }

// run wires the process to runCLI, which does the work and maps errors to
// exit codes; tests call runCLI directly.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runCLI(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
