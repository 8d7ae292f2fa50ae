package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

func init() { register(newExplainCmd) }

func newExplainCmd(e *env) *cobra.Command {
	var (
		files    []string
		flows    flowFlags
		nodePort string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "explain -f PATH [--from X --to X --port N]",
		Short: "Say in words what the policies do, or why a flow is allowed or denied",
		Long: `Without --from or --to, explain describes every loaded NetworkPolicy in
plain words (after the API server's defaulting), sorted by namespace/name.

With --from and/or --to (as for reach; a missing one means every pod) it
explains each flow: what each end is, which policies isolate it, and the rule
that allowed it or the fact that none did. A Service destination
(svc/NAMESPACE/NAME, --port being the Service port) is explained per backend
pod with the translation; --to node/NAME --node-port N follows a NodePort,
including the source NAT that makes the pods see the node.`,
		Example: `  podwall explain -f examples/seed/original/networkpolicy.yaml
  podwall explain -f examples/seed/cluster -f examples/seed/original/networkpolicy.yaml \
      --from default/busybox --to svc/default/httpd-svc --port 8080
  podwall explain -f examples/seed/cluster -f examples/seed/original/networkpolicy-ipblock.yaml \
      --from 203.0.113.7 --to node/k8s-node1 --node-port 31000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(cmd, output); err != nil {
				return err
			}
			var port int32
			if cmd.Flags().Changed("node-port") {
				p, err := parsePort(nodePort)
				if err != nil {
					return flagError("--node-port", err)
				}
				if len(flows.ports) > 0 {
					return &usageError{cmd: cmd.CommandPath(), err: errors.New("--port and --node-port: give one")}
				}
				port = p
				flows.ports = []string{nodePort}
				if len(flows.to) == 0 {
					flows.to = []string{"nodes"}
				}
			}
			flowMode := len(flows.from)+len(flows.to) > 0 || port != 0
			if !flowMode && flows.given() {
				return &usageError{cmd: cmd.CommandPath(), err: errors.New("--port and --protocol need --from or --to")}
			}
			var blocks []policylib.PortProtocol
			if flowMode {
				var err error
				if blocks, err = flows.blocks(); err != nil {
					return err
				}
			}
			c, err := e.load(cmd, files)
			if err != nil {
				return err
			}
			eng, err := c.engine()
			if err != nil {
				return err
			}
			if !flowMode {
				return describePolicies(e, c, output)
			}
			froms, err := c.targets(eng, "--from", flows.from, false)
			if err != nil {
				return err
			}
			tos, err := c.targets(eng, "--to", flows.to, port == 0)
			if err != nil {
				return err
			}
			if port != 0 {
				for _, t := range tos {
					if t.ep.Kind != policylib.EndpointNode {
						return flagError("--to "+t.label, errors.New("--node-port needs node/NAME or nodes destinations"))
					}
				}
			}
			items, err := enumerate(cmd.Context(), eng, froms, tos, blocks, port)
			if err != nil {
				return err
			}
			out := make([]explanation, 0, len(items))
			for _, it := range items {
				x, err := eng.Explain(it.flow)
				if err != nil {
					return err
				}
				if it.note != "" {
					x.Notes = append([]string{it.note}, x.Notes...)
				}
				out = append(out, newExplanation(it, x))
			}
			if output != formatTable {
				return writeStructured(e.out, output, struct {
					Explanations []explanation `json:"explanations"`
				}{out})
			}
			if len(out) == 0 {
				fmt.Fprintln(e.out, "No flows: no sources or destinations (no pods in the input?).")
			}
			for i, x := range out {
				if i > 0 {
					fmt.Fprintln(e.out)
				}
				fmt.Fprint(e.out, x.text)
			}
			return nil
		},
	}
	addFilenameFlag(cmd, &files)
	flows.add(cmd)
	cmd.Flags().StringVar(&nodePort, "node-port", "", "with --to node/NAME: follow this NodePort to the Service's pods")
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// describePolicies writes every NetworkPolicy in plain words.
func describePolicies(e *env, c *cluster, output string) error {
	type described struct {
		Policy      string `json:"policy"`
		Source      string `json:"source,omitempty"`
		Description string `json:"description"`
	}
	out := []described{}
	for _, np := range c.sortedPolicies() {
		out = append(out, described{
			Policy:      np.Namespace + "/" + np.Name,
			Source:      c.source(np),
			Description: policylib.DescribePolicy(np),
		})
	}
	if output != formatTable {
		return writeStructured(e.out, output, struct {
			Policies []described `json:"policies"`
		}{out})
	}
	if len(out) == 0 {
		fmt.Fprintln(e.out, "No NetworkPolicies in the input: no pod is isolated, all traffic is allowed.")
	}
	for i, d := range out {
		if i > 0 {
			fmt.Fprintln(e.out)
		}
		fmt.Fprint(e.out, d.Description)
	}
	return nil
}

// explanation is policylib.Explanation as structured output: the reach
// result fields, then the detail.
type explanation struct {
	result
	Source      endpointInfo `json:"source"`
	Destination endpointInfo `json:"destination"`
	Egress      side         `json:"egress"`
	Ingress     side         `json:"ingress"`
	Notes       []string     `json:"notes,omitempty"`
	text        string
}

type endpointInfo struct {
	Endpoint string            `json:"endpoint"`
	Kind     string            `json:"kind"` // pod, node or address
	Address  string            `json:"address,omitempty"`
	Node     string            `json:"node,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

type side struct {
	Outcome  string   `json:"outcome"`            // not applicable, not isolated, allowed, denied
	Policies []string `json:"policies,omitempty"` // isolating this end in this direction
	Rule     string   `json:"rule,omitempty"`     // the rule that allowed it, e.g. ns/name spec.ingress[0].from[0].ports[0]
	Allows   string   `json:"allows,omitempty"`   // that rule in words
}

func newExplanation(it flowItem, x policylib.Explanation) explanation {
	return explanation{
		result:      it.result(x.Decision.Allowed, reason(x)),
		Source:      newEndpointInfo(x.From),
		Destination: newEndpointInfo(x.To),
		Egress:      newSide(x.Decision.Egress, x.EgressPolicies, x.EgressRule),
		Ingress:     newSide(x.Decision.Ingress, x.IngressPolicies, x.IngressRule),
		Notes:       x.Notes,
		text:        x.String(),
	}
}

func newEndpointInfo(i policylib.EndpointInfo) endpointInfo {
	out := endpointInfo{Endpoint: i.Endpoint.String(), Node: i.Node, Labels: i.Labels}
	switch i.Kind {
	case policylib.EndpointPod:
		out.Kind = "pod"
		out.Endpoint = podName(i)
	case policylib.EndpointNode:
		out.Kind = "node"
	default:
		out.Kind = "address"
	}
	if i.Addr.IsValid() {
		out.Address = i.Addr.String()
	}
	return out
}

func newSide(v policylib.Verdict, pols []types.NamespacedName, rule string) side {
	s := side{Outcome: v.Outcome.String()}
	for _, k := range pols {
		s.Policies = append(s.Policies, k.String())
	}
	if v.Outcome == policylib.AllowedByRule {
		s.Rule = v.Rule.String()
		s.Allows = strings.TrimPrefix(strings.TrimPrefix(rule, s.Rule), ": ")
	}
	return s
}
