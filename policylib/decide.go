package policylib

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// EndpointKind says what an Endpoint names.
type EndpointKind uint8

// Endpoint kinds. The zero value is invalid, so a zero Endpoint is an error
// rather than a silent match.
const (
	EndpointPod EndpointKind = iota + 1
	EndpointNode
	EndpointAddr
)

// Endpoint is one end of a flow: a pod by namespace and name, a node by name
// (its address), or a bare address. An address that belongs to a known pod
// or node is treated as that pod or node.
type Endpoint struct {
	Kind      EndpointKind
	Namespace string     // pods only
	Name      string     // pod or node name
	Addr      netip.Addr // EndpointAddr only
}

// PodEndpoint names a pod.
func PodEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: EndpointPod, Namespace: namespace, Name: name}
}

// NodeEndpoint names a node; flows use its first InternalIP or ExternalIP.
func NodeEndpoint(name string) Endpoint { return Endpoint{Kind: EndpointNode, Name: name} }

// AddrEndpoint is a bare address: a pod's, a node's or one outside the
// cluster.
func AddrEndpoint(a netip.Addr) Endpoint { return Endpoint{Kind: EndpointAddr, Addr: a.Unmap()} }

// ParseEndpoint parses "namespace/pod", "node/NAME", "pod/namespace/pod"
// (a pod of a namespace named node, say) or an IP address.
func ParseEndpoint(s string) (Endpoint, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return AddrEndpoint(a), nil
	}
	pod := s
	if rest, ok := strings.CutPrefix(s, "pod/"); ok && strings.Count(rest, "/") == 1 {
		pod = rest
	} else if name, ok := strings.CutPrefix(s, "node/"); ok && name != "" && !strings.Contains(name, "/") {
		return NodeEndpoint(name), nil
	}
	ns, name, ok := strings.Cut(pod, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: want namespace/pod, node/NAME, pod/namespace/pod or an IP address", s)
	}
	return PodEndpoint(ns, name), nil
}

// String is the endpoint as ParseEndpoint reads it.
func (ep Endpoint) String() string {
	switch ep.Kind {
	case EndpointPod:
		// Spelt out where "ns/name" reads as something else: a node here,
		// and svc/NAMESPACE/NAME is a Service in podwall's command line.
		if ep.Namespace == "node" || ep.Namespace == "pod" || ep.Namespace == "svc" {
			return "pod/" + ep.Namespace + "/" + ep.Name
		}
		return ep.Namespace + "/" + ep.Name
	case EndpointNode:
		return "node/" + ep.Name
	case EndpointAddr:
		return ep.Addr.String()
	}
	return "(invalid endpoint)"
}

// Flow is a connection attempt after any Service translation: the
// destination is a pod address and target port, as NetworkPolicy sees it.
// Port is ignored for ICMP.
type Flow struct {
	From, To Endpoint
	Protocol Protocol
	Port     int32
}

// check rejects a flow no packet can be: an unknown protocol or a port out
// of range.
func (f Flow) check() error {
	if f.Protocol > ICMP {
		return fmt.Errorf("flow %s: unknown protocol", f)
	}
	if f.Protocol.HasPorts() && (f.Port < 1 || f.Port > 65535) {
		return fmt.Errorf("flow %s: port %d out of range 1-65535", f, f.Port)
	}
	return nil
}

func (f Flow) String() string {
	if !f.Protocol.HasPorts() {
		return fmt.Sprintf("%s -> %s %s", f.From, f.To, f.Protocol)
	}
	return fmt.Sprintf("%s -> %s %s/%d", f.From, f.To, f.Protocol, f.Port)
}

// Outcome is the verdict of one direction.
type Outcome uint8

// Outcomes of one direction of a flow.
const (
	// NotApplicable: this end is not a pod, so only the pod end is judged.
	NotApplicable Outcome = iota
	// NotIsolated: no policy selects the pod for this direction, so it is open.
	NotIsolated
	// AllowedByRule: a rule of a policy selecting the pod allows the flow.
	AllowedByRule
	// Denied: policies select the pod for this direction and none allows it.
	Denied
)

func (o Outcome) String() string {
	names := [...]string{"not applicable", "not isolated", "allowed", "denied"}
	if int(o) >= len(names) {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return names[o]
}

// RuleRef names the rule that allowed a direction: the policy, the
// direction, the index of the rule, of the peer in it (AnyPeer when the rule
// lists none) and of the port entry (AnyPort when it lists none).
type RuleRef struct {
	Policy    types.NamespacedName
	Direction Direction
	Rule      int
	Peer      int
	Port      int
}

func (r RuleRef) String() string {
	dir, peers := "ingress", "from"
	if r.Direction == Egress {
		dir, peers = "egress", "to"
	}
	s := fmt.Sprintf("%s spec.%s[%d]", r.Policy, dir, r.Rule)
	if r.Peer >= 0 {
		s += fmt.Sprintf(".%s[%d]", peers, r.Peer)
	}
	if r.Port >= 0 {
		s += fmt.Sprintf(".ports[%d]", r.Port)
	}
	return s
}

// Verdict is the outcome of one direction; Rule is set for AllowedByRule.
type Verdict struct {
	Outcome Outcome
	Rule    RuleRef
}

// Allowed reports whether this direction lets the flow through.
func (v Verdict) Allowed() bool { return v.Outcome != Denied }

// Decision is the verdict on a flow: allowed only when the source's egress
// and the destination's ingress both allow it.
type Decision struct {
	Allowed bool
	Egress  Verdict // judged on the source
	Ingress Verdict // judged on the destination
}

// Decide judges a flow. It does not allocate unless it returns an error,
// which it does for an endpoint the engine does not know or a port out of
// range.
func (e *Engine) Decide(f Flow) (Decision, error) {
	if err := f.check(); err != nil {
		return Decision{}, err
	}
	// No defer: this is the hot path, and nothing below can panic.
	e.mu.RLock()
	src, dst, err := e.resolveFlow(f)
	if err != nil {
		e.mu.RUnlock()
		return Decision{}, err
	}
	d := e.decide(src, dst, f.Protocol, f.Port)
	e.mu.RUnlock()
	return d, nil
}

func (e *Engine) decide(src, dst endpoint, proto Protocol, port int32) Decision {
	var d Decision
	if src.pod != nil {
		d.Egress = e.verdict(Egress, src.pod, dst, dst.pod, proto, port)
	}
	if dst.pod != nil {
		d.Ingress = e.verdict(Ingress, dst.pod, src, dst.pod, proto, port)
	}
	d.Allowed = d.Egress.Allowed() && d.Ingress.Allowed()
	return d
}

// verdict judges one direction on pod self against the other end; named
// ports resolve on dst, the flow's destination pod.
func (e *Engine) verdict(dir Direction, self *pod, other endpoint, dst *pod, proto Protocol, port int32) Verdict {
	sel := self.sel[dir]
	if sel == nil {
		return Verdict{Outcome: NotIsolated}
	}
	checks := sel.checks
	for i := 0; i < len(checks); i++ {
		c := &checks[i]
		if !c.matches(other, e.opts.ipBlockMatchesPods) {
			continue
		}
		qi := matchPorts(*c.ports, dst, proto, port)
		if qi == noMatch {
			// Ports belong to the rule: its other peers cannot do better.
			for i+1 < len(checks) && checks[i+1].sameRule(c) {
				i++
			}
			continue
		}
		return Verdict{Outcome: AllowedByRule, Rule: RuleRef{Policy: c.pol.key, Direction: dir, Rule: int(c.rule), Peer: int(c.peer), Port: qi}}
	}
	return Verdict{Outcome: Denied}
}

// resolveFlow resolves both ends; a pod end takes its address of the other
// end's family, so ipBlocks see the address the packet would carry.
func (e *Engine) resolveFlow(f Flow) (src, dst endpoint, err error) {
	if src, err = e.resolve(f.From); err != nil {
		return
	}
	if dst, err = e.resolve(f.To); err != nil {
		return
	}
	// An end given as an address keeps it (a pod has at most one address
	// per family): only an end named as a pod takes the other's family.
	switch {
	case f.From.Kind == EndpointAddr && f.To.Kind == EndpointAddr:
	case f.From.Kind == EndpointAddr:
		// Even when the other end has no address of its family.
		dst, _ = matchFamilies(dst, endpoint{addr: src.addr})
	case f.To.Kind == EndpointAddr:
		src, _ = matchFamilies(src, endpoint{addr: dst.addr})
	default:
		src, dst = matchFamilies(src, dst)
	}
	return
}

// matchFamilies makes a pod end take its address of the other end's family,
// as one packet carries addresses of one family.
func matchFamilies(src, dst endpoint) (endpoint, endpoint) {
	if src.pod != nil && dst.addr.IsValid() {
		src.addr = src.pod.addrOfFamily(dst.addr, src.addr)
	}
	if dst.pod != nil && src.addr.IsValid() {
		dst.addr = dst.pod.addrOfFamily(src.addr, dst.addr)
	}
	return src, dst
}

func (p *pod) addrOfFamily(like, fallback netip.Addr) netip.Addr {
	if p.addr.IsValid() && p.addr.Is4() == like.Is4() {
		return p.addr // the common, single-stack case: no need to load ips
	}
	for _, ip := range p.ips {
		if ip.Is4() == like.Is4() {
			return ip
		}
	}
	return fallback
}

func (e *Engine) resolve(ep Endpoint) (endpoint, error) {
	switch ep.Kind {
	case EndpointPod:
		if p := e.lookupPod(ep.Namespace, ep.Name); p != nil {
			return p.endpoint(), nil
		}
		return endpoint{}, fmt.Errorf("pod %s/%s: %w", ep.Namespace, ep.Name, ErrUnknownEndpoint)
	case EndpointNode:
		n, ok := e.nodes[ep.Name]
		if !ok || len(n.addrs) == 0 {
			return endpoint{}, nodeEndpointError(ep.Name, ok)
		}
		return endpoint{addr: n.addrs[0]}, nil
	case EndpointAddr:
		if !ep.Addr.IsValid() {
			return endpoint{}, fmt.Errorf("invalid address: %w", ErrUnknownEndpoint)
		}
		a := ep.Addr.Unmap()
		if p, ok := e.podByIP[a]; ok && !p.hostNetwork {
			return endpoint{pod: p, addr: a}, nil
		}
		return endpoint{addr: a}, nil
	}
	return endpoint{}, fmt.Errorf("endpoint with no kind: %w", ErrUnknownEndpoint)
}

func (p *pod) endpoint() endpoint {
	if p.hostNetwork {
		return endpoint{addr: p.addr}
	}
	return endpoint{pod: p, addr: p.addr}
}
