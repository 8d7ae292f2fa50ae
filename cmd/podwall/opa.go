package main

import (
	"errors"

	opacmd "github.com/open-policy-agent/opa/cmd"
	"github.com/spf13/cobra"

	"github.com/podwall/podwall/rules"
)

func init() { register(newOPACmd) }

// newOPACmd mounts OPA's own command line (run, eval, test, build, fmt,
// check, ...) as `podwall opa`, with podwall's built-ins registered, so
// `podwall opa test rules/` runs the rules' Rego tests and `podwall opa eval`
// can call podwall.decide.
//
// OPA's commands write to the process's standard output and error
// themselves, not to podwall's buffered output: their output streams, as
// `opa run` needs, and is not held back on failure. Their exit statuses
// (eval --fail: 1, test failures: 2, ...) are podwall's.
func newOPACmd(_ *env) *cobra.Command {
	rules.RegisterGlobal()
	cmd := &cobra.Command{
		Use:   "opa",
		Short: "OPA's command line (eval, test, build, run, ...) with podwall's Rego built-ins",
		Long: `The Open Policy Agent command line, with podwall's Rego built-ins registered:
podwall.selector_matches, podwall.ipblock_contains, podwall.ports_allow,
podwall.decide, podwall.is_default_deny, podwall.allow_all_rules, podwall.lint.
podwall's admission rules are in rules/ (see rules/README.md):

  podwall opa test rules/
  podwall opa eval -I 'podwall.selector_matches({"matchLabels": {"app": "web"}}, input.metadata.labels)' < pod.json
  cd rules && podwall opa build -b . --ignore '*_test.rego' -o ../bundle.tar.gz`,
		// Every subcommand's own usage; this one only groups them.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	opacmd.Command(cmd, "OPA")
	for _, c := range cmd.Commands() {
		adoptExitStatus(c)
	}
	return cmd
}

// adoptExitStatus turns OPA's *ExitError (which OPA's main maps to the exit
// status, having printed the problem already), and the errors of commands
// that printed them and silenced cobra, into podwall's exitStatus, so runCLI
// exits with OPA's status and prints nothing more.
func adoptExitStatus(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			if ee, ok := errors.AsType[*opacmd.ExitError](err); ok {
				if ee.Exit == 0 {
					return nil
				}
				return exitStatus(ee.Exit)
			}
			if err != nil && cmd.SilenceErrors {
				// The command printed the problem itself (opa check, fmt,
				// ...); OPA's main exits 1 for it.
				return exitStatus(1)
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		adoptExitStatus(sub)
	}
}
