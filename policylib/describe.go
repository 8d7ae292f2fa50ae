package policylib

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DescribePolicy says in plain words what a NetworkPolicy does, after the
// API server's defaulting: which pods it selects, which directions it
// isolates and what each rule allows.
func DescribePolicy(np *networkingv1.NetworkPolicy) string {
	d := DefaultPolicy(np)
	var b strings.Builder
	fmt.Fprintf(&b, "NetworkPolicy %s/%s selects %s.\n", d.Namespace, d.Name, describePods(&d.Spec.PodSelector, "namespace "+d.Namespace))
	for _, t := range d.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			if len(d.Spec.Ingress) == 0 {
				b.WriteString("  Ingress: isolated; no rule, so all incoming traffic is denied.\n")
			} else {
				b.WriteString("  Ingress: isolated; allowed only:\n")
				for i, r := range d.Spec.Ingress {
					fmt.Fprintf(&b, "    rule %d: %s\n", i, describeRule(d.Namespace, Ingress, r.From, r.Ports, AnyPeer-1, AnyPort-1))
				}
			}
		case networkingv1.PolicyTypeEgress:
			if len(d.Spec.Egress) == 0 {
				b.WriteString("  Egress: isolated; no rule, so all outgoing traffic is denied (DNS included).\n")
			} else {
				b.WriteString("  Egress: isolated; allowed only:\n")
				for i, r := range d.Spec.Egress {
					fmt.Fprintf(&b, "    rule %d: %s\n", i, describeRule(d.Namespace, Egress, r.To, r.Ports, AnyPeer-1, AnyPort-1))
				}
			}
		}
	}
	return b.String()
}

func describePods(sel *metav1.LabelSelector, where string) string {
	s := compileSelector(sel)
	if s.Empty() {
		return "every pod in " + where
	}
	return "pods with " + s.String() + " in " + where
}

// describeRule renders a rule; peer and port, when >= 0, pick one peer and
// one port entry (the ones that allowed a flow), otherwise all are listed.
func describeRule(ns string, dir Direction, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, peer, port int) string {
	word := "from"
	if dir == Egress {
		word = "to"
	}
	var who string
	switch {
	case len(peers) == 0:
		who = word + " anywhere"
	case peer >= 0 && peer < len(peers):
		who = word + " " + describePeer(ns, &peers[peer])
	default:
		parts := make([]string, len(peers))
		for i := range peers {
			parts[i] = describePeer(ns, &peers[i])
		}
		who = word + " " + strings.Join(parts, ", or ")
	}
	var what string
	switch {
	case len(ports) == 0:
		what = "on every port and protocol (ICMP included)"
	case port >= 0 && port < len(ports):
		what = "on " + describePort(&ports[port])
	default:
		parts := make([]string, len(ports))
		for i := range ports {
			parts[i] = describePort(&ports[i])
		}
		what = "on " + strings.Join(parts, ", ")
	}
	return who + " " + what
}

func describePeer(ns string, p *networkingv1.NetworkPolicyPeer) string {
	if p.IPBlock != nil {
		s := "addresses in " + p.IPBlock.CIDR
		if len(p.IPBlock.Except) > 0 {
			s += " except " + strings.Join(p.IPBlock.Except, ", ")
		}
		return s
	}
	where := "namespace " + ns
	if p.NamespaceSelector != nil {
		if s := compileSelector(p.NamespaceSelector); s.Empty() {
			where = "every namespace"
		} else {
			where = "namespaces with " + s.String()
		}
	}
	if p.PodSelector == nil {
		return "every pod in " + where
	}
	return describePods(p.PodSelector, where)
}

func describePort(p *networkingv1.NetworkPolicyPort) string {
	proto := "TCP"
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	switch {
	case p.Port == nil:
		return "every " + proto + " port"
	case p.Port.Type == intstr.String:
		return fmt.Sprintf("%s port named %q (resolved on the destination pod)", proto, p.Port.StrVal)
	case p.EndPort != nil:
		return fmt.Sprintf("%s ports %d-%d", proto, p.Port.IntVal, *p.EndPort)
	}
	return fmt.Sprintf("%s %d", proto, p.Port.IntVal)
}
