package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/podwall/podwall/policylib"
)

func init() { register(newLintCmd) }

func newLintCmd(e *env) *cobra.Command {
	var (
		files  []string
		output string
	)
	cmd := &cobra.Command{
		Use:   "lint -f PATH",
		Short: "Find NetworkPolicy mistakes: what the API server rejects, and legal traps",
		Long: `lint checks every loaded NetworkPolicy: errors for what the API server would
reject, warnings for what is legal but almost certainly not what was meant
(a policy that selects no pod, a Service port where the pod port belongs,
ipBlocks covering pod addresses, ...). Checks about pods run only when the
input has pods or workloads.

Exit status 1 when there is an error finding, 0 otherwise (warnings only).`,
		Example: `  podwall lint -f examples/seed/cluster -f examples/seed/original/networkpolicy.yaml
  kubectl get netpol,pods,svc,ns -A -o yaml | podwall lint -f - -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(cmd, output); err != nil {
				return err
			}
			c, err := e.load(cmd, files)
			if err != nil {
				return err
			}
			// Invalid policies are findings; any other invalid object (a
			// pod or node with a malformed address) is bad input.
			if err := c.checkNonPolicies(); err != nil {
				return err
			}
			type finding struct {
				Severity string `json:"severity"`
				Code     string `json:"code"`
				Policy   string `json:"policy"`
				Field    string `json:"field,omitempty"`
				Message  string `json:"message"`
				Source   string `json:"source,omitempty"`
			}
			out := []finding{}
			errorsFound := 0
			for _, f := range policylib.Lint(c.snap) {
				if f.Severity == policylib.SeverityError {
					errorsFound++
				}
				out = append(out, finding{
					Severity: f.Severity.String(), Code: f.Code, Policy: f.Policy.String(),
					Field: f.Field, Message: f.Message, Source: c.policySource(f.Policy),
				})
			}
			if output != formatTable {
				if err := writeStructured(e.out, output, struct {
					Findings []finding `json:"findings"`
				}{out}); err != nil {
					return err
				}
			} else if len(out) == 0 {
				fmt.Fprintf(e.out, "No findings in %d NetworkPolicies.\n", len(c.snap.Policies))
			} else {
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEVERITY\tCODE\tPOLICY\tFIELD\tSOURCE\tMESSAGE")
				for _, f := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Code, f.Policy, dash(f.Field), dash(f.Source), oneLine(f.Message))
				}
				tw.Flush()
			}
			if errorsFound > 0 {
				return exitStatus(exitFound)
			}
			return nil
		},
	}
	addFilenameFlag(cmd, &files)
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
