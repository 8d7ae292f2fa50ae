package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

// flowFlags name the flows reach and explain look at.
type flowFlags struct {
	from, to  []string
	ports     []string
	protocols []string
}

func (f *flowFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.from, "from", nil,
		"source: NAMESPACE/POD (pod/NAMESPACE/POD for a namespace named node), node/NAME, an IP address, pods (every pod) or nodes (every node); repeatable (default every pod)")
	fl.StringArrayVar(&f.to, "to", nil,
		"destination: as --from, or svc/NAMESPACE/NAME (the Service's pods; --port is then the Service port); repeatable (default every pod)")
	fl.StringArrayVar(&f.ports, "port", nil, "destination port, 1-65535; repeatable or comma-separated; ignored for ICMP")
	fl.StringArrayVar(&f.protocols, "protocol", nil, "TCP, UDP, SCTP or ICMP; repeatable or comma-separated (default TCP)")
}

// given reports whether any flow flag was set.
func (f *flowFlags) given() bool {
	return len(f.from)+len(f.to)+len(f.ports)+len(f.protocols) > 0
}

// protocolList parses --protocol, TCP when not given, without duplicates.
func (f *flowFlags) protocolList() ([]policylib.Protocol, error) {
	if len(f.protocols) == 0 {
		return []policylib.Protocol{policylib.TCP}, nil
	}
	var out []policylib.Protocol
	for _, s := range splitCommas(f.protocols) {
		p, err := policylib.ParseProtocol(s)
		if err != nil {
			return nil, flagError("--protocol", err)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// portList parses --port, without duplicates, in flag order.
func (f *flowFlags) portList() ([]int32, error) {
	var out []int32
	for _, s := range splitCommas(f.ports) {
		n, err := parsePort(s)
		if err != nil {
			return nil, flagError("--port", err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// splitCommas lets a repeatable flag also take a comma-separated list.
func splitCommas(values []string) []string {
	var out []string
	for _, v := range values {
		out = append(out, strings.Split(v, ",")...)
	}
	return out
}

func parsePort(s string) (int32, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (want 1-65535)", s)
	}
	return int32(n), nil
}

// blocks returns the port/protocol combinations to judge: for each
// protocol, each port in flag order; ICMP, which has no ports, once.
func (f *flowFlags) blocks() ([]policylib.PortProtocol, error) {
	protos, err := f.protocolList()
	if err != nil {
		return nil, err
	}
	ports, err := f.portList()
	if err != nil {
		return nil, err
	}
	var out []policylib.PortProtocol
	for _, proto := range protos {
		if !proto.HasPorts() {
			out = append(out, policylib.PortProtocol{Protocol: proto})
			continue
		}
		if len(ports) == 0 {
			return nil, fmt.Errorf("--port: required for %s (give --port N, or --protocol ICMP)", proto)
		}
		for _, p := range ports {
			out = append(out, policylib.PortProtocol{Port: p, Protocol: proto})
		}
	}
	return out, nil
}

// target is one value of --from or --to, resolved against the input.
type target struct {
	label string // as printed: ns/pod, node/NAME, an address, svc/ns/name
	ep    policylib.Endpoint
	svc   *types.NamespacedName // for svc/ns/name
}

// targets resolves --from or --to values; none means every pod. Targets
// are sorted by label and without duplicates.
func (c *cluster) targets(eng *policylib.Engine, flag string, values []string, allowSvc bool) ([]target, error) {
	if len(values) == 0 {
		values = []string{"pods"}
	}
	var out []target
	for _, v := range values {
		ts, err := c.target(eng, flag, v, allowSvc)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	slices.SortFunc(out, func(a, b target) int { return strings.Compare(a.label, b.label) })
	return slices.CompactFunc(out, func(a, b target) bool { return a.label == b.label }), nil
}

// The engine says which pods and nodes are flow ends: it knows which pods
// have finished and which nodes have an address.
func (c *cluster) target(eng *policylib.Engine, flag, v string, allowSvc bool) ([]target, error) {
	switch {
	case v == "pods":
		var out []target
		for _, k := range eng.Pods() {
			ep := policylib.PodEndpoint(k.Namespace, k.Name)
			out = append(out, target{label: ep.String(), ep: ep})
		}
		return out, nil
	case v == "nodes":
		var out []target
		for _, name := range eng.Nodes() {
			out = append(out, target{label: "node/" + name, ep: policylib.NodeEndpoint(name)})
		}
		return out, nil
	case strings.HasPrefix(v, "svc/"):
		if !allowSvc {
			return nil, flagError(flag+" "+v, errors.New("a Service can only be a destination (--to)"))
		}
		ns, name, ok := strings.Cut(strings.TrimPrefix(v, "svc/"), "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, flagError(flag+" "+v, errors.New("want svc/NAMESPACE/NAME"))
		}
		if !slices.ContainsFunc(c.snap.Services, func(s *corev1.Service) bool { return s.Namespace == ns && s.Name == name }) {
			return nil, flagError(flag+" "+v, errors.New("unknown Service: not in the input"))
		}
		return []target{{label: v, svc: &types.NamespacedName{Namespace: ns, Name: name}}}, nil
	}
	ep, err := policylib.ParseEndpoint(v)
	if err != nil {
		want := "NAMESPACE/POD, pod/NAMESPACE/POD, node/NAME, an IP address, pods or nodes"
		if allowSvc {
			want = "NAMESPACE/POD, pod/NAMESPACE/POD, node/NAME, svc/NAMESPACE/NAME, an IP address, pods or nodes"
		}
		return nil, flagError(flag, fmt.Errorf("%q: want %s", v, want))
	}
	if err := eng.CheckEndpoint(ep); err != nil {
		switch {
		case ep.Kind == policylib.EndpointPod:
			err = errors.New("unknown pod: not in the input (or finished)")
		case errors.Is(err, policylib.ErrNodeWithoutAddress):
			err = errors.New("node has " + policylib.ErrNodeWithoutAddress.Error())
		case ep.Kind == policylib.EndpointNode:
			err = errors.New("unknown node: not in the input")
		}
		return nil, flagError(flag+" "+v, err)
	}
	return []target{{label: ep.String(), ep: ep}}, nil
}

// flowItem is one flow to judge, as the user named it and as the engine
// sees it after any Service or NodePort translation.
type flowItem struct {
	block      policylib.PortProtocol // the port and protocol asked for
	from, to   string                 // labels as asked for
	flow       policylib.Flow
	pod        string // the backend pod, for a Service or NodePort
	targetPort int32
	via        string // the Service, for a Service or NodePort
	note       string // how the flow was translated
}

// enumerate lists the flows of every block, from and to, in that order
// (froms and tos are sorted). A Service target gives one flow per backend
// pod. With nodePort set, every to is a node, and the flow goes to that
// NodePort on it.
func enumerate(ctx context.Context, eng *policylib.Engine, froms, tos []target, blocks []policylib.PortProtocol, nodePort int32) ([]flowItem, error) {
	var out []flowItem
	for _, b := range blocks {
		for _, fr := range froms {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for _, to := range tos {
				var sfs []policylib.ServiceFlow
				var err error
				switch {
				case nodePort != 0:
					sfs, err = eng.ResolveNodePort(fr.ep, to.ep.Name, nodePort, b.Protocol)
				case to.svc != nil && !b.Protocol.HasPorts():
					err = fmt.Errorf("a Service forwards TCP, UDP and SCTP only, not %s", b.Protocol)
				case to.svc != nil:
					sfs, err = eng.ResolveService(fr.ep, to.svc.Namespace, to.svc.Name, b.Port, b.Protocol)
				default:
					out = append(out, flowItem{block: b, from: fr.label, to: to.label,
						flow: policylib.Flow{From: fr.ep, To: to.ep, Protocol: b.Protocol, Port: b.Port}})
					continue
				}
				if err != nil {
					return nil, flagError("--to "+to.label, err)
				}
				for _, sf := range sfs {
					note := sf.Note
					if sf.Flow.From != fr.ep { // source NAT: say what was asked
						note = fmt.Sprintf("%s -> %s %s: %s", fr.label, to.label, b, note)
					}
					out = append(out, flowItem{
						block: b, from: fr.label, to: to.label, flow: sf.Flow,
						pod: sf.Flow.To.String(), targetPort: sf.Flow.Port,
						via: "svc/" + sf.Service.String(), note: note,
					})
				}
			}
		}
	}
	return out, nil
}

// result is one judged flow: the reach contract's five fields, then extras.
type result struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Port       int32  `json:"port"`
	Protocol   string `json:"protocol"`
	Allowed    bool   `json:"allowed"`
	Pod        string `json:"pod,omitempty"`
	TargetPort int32  `json:"targetPort,omitempty"`
	Via        string `json:"via,omitempty"`
	Reason     string `json:"reason"`
}

func (it flowItem) result(allowed bool, reason string) result {
	return result{
		From: it.from, To: it.to, Port: it.block.Port, Protocol: it.block.Protocol.String(),
		Allowed: allowed, Pod: it.pod, TargetPort: it.targetPort, Via: it.via, Reason: reason,
	}
}

// judge decides a flow and says why in one line. Only a denied flow needs
// the policies that isolate its ends, so only then does it ask for the
// (allocating) explanation.
func judge(eng *policylib.Engine, it flowItem) (result, error) {
	d, err := eng.Decide(it.flow)
	if err != nil {
		return result{}, err
	}
	x := policylib.Explanation{Flow: it.flow, Decision: d}
	if !d.Allowed {
		if x, err = eng.Explain(it.flow); err != nil {
			return result{}, err
		}
	}
	return it.result(d.Allowed, reason(x)), nil
}

// reason summarises an explanation in one line.
func reason(x policylib.Explanation) string {
	d := x.Decision
	if !d.Allowed {
		var parts []string
		if d.Egress.Outcome == policylib.Denied {
			parts = append(parts, fmt.Sprintf("egress denied: %s selected by %s, no rule allows", podName(x.From), joinKeys(x.EgressPolicies)))
		}
		if d.Ingress.Outcome == policylib.Denied {
			parts = append(parts, fmt.Sprintf("ingress denied: %s selected by %s, no rule allows", podName(x.To), joinKeys(x.IngressPolicies)))
		}
		s := strings.Join(parts, "; ")
		if !x.Flow.Protocol.HasPorts() {
			s += " (only a rule without ports allows ICMP)"
		}
		return s
	}
	var parts []string
	for _, v := range []policylib.Verdict{d.Egress, d.Ingress} {
		if v.Outcome == policylib.AllowedByRule {
			parts = append(parts, "allowed by "+v.Rule.String())
		}
	}
	switch {
	case len(parts) > 0:
		return strings.Join(parts, "; ")
	case d.Egress.Outcome == policylib.NotApplicable && d.Ingress.Outcome == policylib.NotApplicable:
		return "not isolated: neither end is a pod"
	}
	return "not isolated"
}

func podName(i policylib.EndpointInfo) string {
	if i.Kind == policylib.EndpointPod {
		return i.Endpoint.Namespace + "/" + i.Endpoint.Name
	}
	return i.Endpoint.String()
}

func joinKeys(ks []types.NamespacedName) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}
