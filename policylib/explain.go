package policylib

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// EndpointInfo describes a resolved flow end for people.
type EndpointInfo struct {
	Endpoint Endpoint
	Kind     EndpointKind // what it resolved to: a pod, a node or an outside address
	Addr     netip.Addr   // the address the flow carries; invalid for a pod with none
	Node     string       // the node a pod runs on, or the node an address belongs to
	Labels   map[string]string
}

func (i EndpointInfo) String() string {
	s := i.Endpoint.String()
	switch {
	case i.Endpoint.Kind == EndpointAddr && i.Kind == EndpointPod:
		s += " (pod " + i.Endpoint.Namespace + "/" + i.Endpoint.Name + ")"
	case i.Endpoint.Kind == EndpointAddr && i.Kind == EndpointNode:
		s += " (node " + i.Node + ")"
	case i.Kind == EndpointNode && i.Endpoint.Kind == EndpointNode:
		s += " (" + i.Addr.String() + ")"
	}
	return s
}

// Explanation is a Decision with every reason a person needs: what each end
// resolved to, which policies select each pod in the direction that matters,
// the rule that allowed each direction, and notes such as Service translation.
type Explanation struct {
	Flow     Flow
	From, To EndpointInfo
	Decision Decision
	// EgressPolicies select the source for egress; IngressPolicies select the
	// destination for ingress. Empty means that side is open (or not a pod).
	EgressPolicies, IngressPolicies []types.NamespacedName
	// AllowedBy describes the rules in Decision in words, per direction.
	EgressRule, IngressRule string
	Notes                   []string
}

// Explain decides a flow and says why. It allocates; use Decide on hot paths.
func (e *Engine) Explain(f Flow) (Explanation, error) {
	if err := f.check(); err != nil {
		return Explanation{}, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	src, dst, err := e.resolveFlow(f)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{
		Flow:     f,
		From:     e.info(f.From, src),
		To:       e.info(f.To, dst),
		Decision: e.decide(src, dst, f.Protocol, f.Port),
	}
	if src.pod != nil {
		x.EgressPolicies = policyKeys(src.pod.policiesIn(Egress))
	}
	if dst.pod != nil {
		x.IngressPolicies = policyKeys(dst.pod.policiesIn(Ingress))
	}
	if v := x.Decision.Egress; v.Outcome == AllowedByRule {
		x.EgressRule = e.describeRuleRef(v.Rule)
	}
	if v := x.Decision.Ingress; v.Outcome == AllowedByRule {
		x.IngressRule = e.describeRuleRef(v.Rule)
	}
	if f.Protocol == ICMP && (x.Decision.Egress.Outcome == Denied || x.Decision.Ingress.Outcome == Denied) {
		x.Notes = append(x.Notes, "ICMP is not a NetworkPolicy protocol: only a rule without ports allows it")
	}
	x.Notes = append(x.Notes, e.podEndNotes(f.From)...)
	x.Notes = append(x.Notes, e.podEndNotes(f.To)...)
	return x, nil
}

// podEndNotes says what about a pod named as a flow end changes how the
// decision reads: it has no address yet, or it runs in the host's network
// namespace, where NetworkPolicy does not apply (CNIs judge its traffic as
// the node's).
func (e *Engine) podEndNotes(ep Endpoint) []string {
	if ep.Kind != EndpointPod {
		return nil
	}
	p := e.lookupPod(ep.Namespace, ep.Name)
	switch {
	case p == nil:
		return nil
	case p.hostNetwork:
		return []string{fmt.Sprintf("%s uses the host's network: NetworkPolicy does not select it, and its traffic is judged as its node's", ep)}
	case !p.addr.IsValid():
		return []string{fmt.Sprintf("%s has no address yet: no packet carries this flow until it has one", ep)}
	}
	return nil
}

func policyKeys(ps []*policy) []types.NamespacedName {
	out := make([]types.NamespacedName, len(ps))
	for i, p := range ps {
		out[i] = p.key
	}
	return out
}

func (e *Engine) info(ep Endpoint, r endpoint) EndpointInfo {
	i := EndpointInfo{Endpoint: ep, Kind: EndpointAddr, Addr: r.addr}
	switch {
	case r.pod != nil:
		i.Kind, i.Node, i.Labels = EndpointPod, r.pod.node, maps.Clone(r.pod.labels) // the caller may change its copy
		i.Endpoint.Namespace, i.Endpoint.Name = r.pod.key.Namespace, r.pod.key.Name
	case e.nodeByIP[r.addr] != nil:
		i.Kind, i.Node = EndpointNode, e.nodeByIP[r.addr].name
	}
	return i
}

// describeRuleRef says in words which rule, peer and port allowed a flow.
func (e *Engine) describeRuleRef(r RuleRef) string {
	pol, ok := e.policies[r.Policy]
	if !ok {
		return r.String()
	}
	s := r.String()
	spec := pol.obj.Spec
	if r.Direction == Ingress {
		rule := spec.Ingress[r.Rule]
		s += ": " + describeRule(pol.key.Namespace, Ingress, rule.From, rule.Ports, r.Peer, r.Port)
	} else {
		rule := spec.Egress[r.Rule]
		s += ": " + describeRule(pol.key.Namespace, Egress, rule.To, rule.Ports, r.Peer, r.Port)
	}
	return s
}

// String renders the explanation as a few lines of plain text.
func (x Explanation) String() string {
	var b strings.Builder
	verdict := "DENIED"
	if x.Decision.Allowed {
		verdict = "ALLOWED"
	}
	flow := x.Flow
	fmt.Fprintf(&b, "%s -> %s", x.From, x.To)
	if flow.Protocol.HasPorts() {
		fmt.Fprintf(&b, " %s/%d", flow.Protocol, flow.Port)
	} else {
		fmt.Fprintf(&b, " %s", flow.Protocol)
	}
	fmt.Fprintf(&b, ": %s\n", verdict)
	side := func(name string, info EndpointInfo, v Verdict, pols []types.NamespacedName, rule string) {
		fmt.Fprintf(&b, "  %s of %s: ", name, info.Endpoint)
		switch v.Outcome {
		case NotApplicable:
			b.WriteString("not a pod; judged on the pod side only\n")
		case NotIsolated:
			fmt.Fprintf(&b, "allowed: no NetworkPolicy selects it for %s\n", name)
		case AllowedByRule:
			fmt.Fprintf(&b, "allowed by %s\n", rule)
		case Denied:
			fmt.Fprintf(&b, "denied: selected for %s by %s, and no rule of theirs allows this flow\n", name, joinKeys(pols))
		}
	}
	side("egress", x.From, x.Decision.Egress, x.EgressPolicies, x.EgressRule)
	side("ingress", x.To, x.Decision.Ingress, x.IngressPolicies, x.IngressRule)
	for _, n := range x.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func joinKeys(ks []types.NamespacedName) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
