package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFound       = 1 // the command ran and found what it checks for (lint: an error finding)
	exitBadInput    = 2 // unreadable or invalid input, or a usage error
	exitInterrupted = 130
)

// env is everything a subcommand may touch instead of the process's
// globals, so the whole CLI runs in-process in tests.
type env struct {
	stdin io.Reader
	// out collects a command's output. runCLI copies it to the real
	// standard output only when the command succeeded (or ended with an
	// exitStatus), so bad input never leaves partial output behind.
	out *bytes.Buffer
	// stdout is the real standard output, for long-running commands
	// (servers, watchers) that must stream; every other command writes to out.
	stdout io.Writer
	// stderr is for diagnostics of long-running commands; errors are
	// reported by runCLI from the returned error, not written here.
	stderr io.Writer
}

// commandFactory makes one subcommand. Each subcommand lives in its own
// file, which registers its factory from init:
//
//	func init() { register(newReachCmd) }
//
// The factory is called afresh for every run, so flag variables are never
// shared between runs (tests run the CLI many times in one process).
type commandFactory func(*env) *cobra.Command

var commandFactories []commandFactory

func register(f commandFactory) { commandFactories = append(commandFactories, f) }

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "podwall",
		Short: "Check Kubernetes NetworkPolicy offline, from manifests",
		Long: `podwall evaluates Kubernetes NetworkPolicy exactly as the API defines it,
offline, from the manifests you give it with -f (files, directories, or - for
stdin; multi-document YAML, JSON and List kinds). Pods come from Pod objects
and from workloads (Deployments, StatefulSets, DaemonSets, Jobs, ...).

Exit status: 0 success, 1 the command found what it checks for (lint: an
error finding), 2 bad input or usage, 130 interrupted.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf("unknown command %q", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetIn(e.stdin)
	root.SetOut(e.out)
	root.SetErr(e.out)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: err}
	})
	var cmds []*cobra.Command
	for _, f := range commandFactories {
		cmds = append(cmds, f(e))
	}
	slices.SortFunc(cmds, func(a, b *cobra.Command) int { return strings.Compare(a.Name(), b.Name()) })
	root.AddCommand(cmds...)
	return root
}

// runCLI runs podwall with args and returns the exit status. Output goes to
// stdout only when the command did not fail; a failure is one line on stderr.
func runCLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, out: &bytes.Buffer{}, stdout: stdout, stderr: stderr}
	root := newRootCmd(e)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCodeOf(err)
	var status exitStatus
	if err == nil || errors.As(err, &status) {
		if _, werr := stdout.Write(e.out.Bytes()); werr != nil {
			fmt.Fprintf(stderr, "podwall: writing output: %s\n", oneLine(werr.Error()))
			return exitBadInput
		}
		return code
	}
	msg := oneLine(err.Error())
	if code == exitInterrupted {
		msg = "interrupted"
	}
	fmt.Fprintf(stderr, "podwall: %s\n", msg)
	return code
}

func exitCodeOf(err error) int {
	var status exitStatus
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &status):
		return int(status)
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitBadInput
}

// exitStatus ends a command that wrote its output normally with a non-zero
// status, such as lint when it found an error. Nothing goes to stderr.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// usageError is a mistake in the command line.
type usageError struct {
	cmd string // "podwall reach"
	err error
}

func (u *usageError) Error() string {
	return fmt.Sprintf("%s (see '%s --help')", u.err, u.cmd)
}

func (u *usageError) Unwrap() error { return u.err }

// flagError is a bad flag value, reported as "--flag value: problem".
func flagError(flag string, err error) error {
	return fmt.Errorf("%s: %w", flag, err)
}

// noArgs rejects positional arguments: every input is named by a flag.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{cmd: cmd.CommandPath(), err: fmt.Errorf("unexpected argument %q (every input is given with a flag)", args[0])}
	}
	return nil
}

var lineBreaks = regexp.MustCompile(`\s*\n\s*`)

// oneLine folds a multi-line message, so every failure is exactly one line.
func oneLine(s string) string {
	return lineBreaks.ReplaceAllString(strings.TrimSpace(s), "; ")
}
