package policylib_test

// A slow, deliberately naive reference evaluator of Kubernetes NetworkPolicy.
//
// It is the specification the differential tests hold the engine to, so it
// is written to be read, not to be fast: every call walks the upstream API
// objects of the snapshot from scratch, applies the API server's defaults by
// hand, matches labels with k8s.io/apimachinery's own selectors (never
// policylib's) and CIDRs with the standard library's net package. Nothing is
// cached or precomputed.
//
// The rules it encodes, from the networking/v1 API documentation:
//
//   - A pod is isolated for a direction when at least one NetworkPolicy in
//     its namespace selects it (spec.podSelector) and lists that direction in
//     policyTypes. policyTypes, when omitted, is Ingress, plus Egress when the
//     policy has egress rules. A pod no policy isolates is open.
//   - An isolated pod allows a flow when any rule of that direction, of any
//     policy that selects it, matches both the peer and the port.
//   - A rule with no peers matches every peer. A podSelector/namespaceSelector
//     peer matches pods: no namespaceSelector means the policy's namespace,
//     no podSelector means every pod of the selected namespaces. Namespace
//     labels always include kubernetes.io/metadata.name. An ipBlock peer
//     matches addresses in cidr and not in any except, pod addresses included.
//   - A rule with no ports matches every port of every protocol, ICMP
//     included; a rule with ports never matches ICMP. A port's protocol
//     defaults to TCP; no port number means every port of the protocol; a
//     named port is looked up on the destination pod's containers (sidecar
//     init containers included).
//   - A flow is allowed when the source's egress and the destination's
//     ingress both allow it; an end that is not a pod is not judged.
//
// And the engine's documented choices where the API leaves it open: a
// host-network pod is treated as its address (no policy selects it, no pod
// selector matches it); a pod that has Succeeded or Failed does not exist; an
// address that belongs to a pod is that pod; a packet carries one address
// family, so an end named by an address keeps it and an end named as a pod
// uses its address of the other end's family when it has one.

import (
	"fmt"
	"net"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

// refEnd is one end of a flow as the reference sees it: the pod that
// policies apply to (nil for a node, an outside address or a host-network
// pod) and the address the packet carries (nil when there is none).
type refEnd struct {
	pod *corev1.Pod
	ips []net.IP // every address of the pod, when it is one
	ip  net.IP
}

// refVerdicts judges each direction of the flow: egress on the source,
// ingress on the destination (true when that end is not a pod). ok is false
// when an endpoint does not exist.
func refVerdicts(s *policylib.Snapshot, ipBlockMatchesPods bool, from, to policylib.Endpoint, proto policylib.Protocol, port int32) (egress, ingress, ok bool) {
	src, ok1 := refResolve(s, from)
	dst, ok2 := refResolve(s, to)
	if !ok1 || !ok2 {
		return false, false, false
	}

	// The packet carries addresses of one family. An end named by an address
	// keeps it; a pod named as a pod uses its address of the other end's
	// family.
	if src.pod != nil && from.Kind == policylib.EndpointPod && dst.ip != nil {
		if ip := refIPOfFamily(src.ips, dst.ip); ip != nil {
			src.ip = ip
		}
	}
	if dst.pod != nil && to.Kind == policylib.EndpointPod && src.ip != nil {
		if ip := refIPOfFamily(dst.ips, src.ip); ip != nil {
			dst.ip = ip
		}
	}

	egress, ingress = true, true
	if src.pod != nil {
		egress = refDirectionAllows(s, ipBlockMatchesPods, networkingv1.PolicyTypeEgress, src.pod, dst, dst.pod, proto, port)
	}
	if dst.pod != nil {
		ingress = refDirectionAllows(s, ipBlockMatchesPods, networkingv1.PolicyTypeIngress, dst.pod, src, dst.pod, proto, port)
	}
	return egress, ingress, true
}

// refResolve finds what an endpoint names in the snapshot.
func refResolve(s *policylib.Snapshot, ep policylib.Endpoint) (refEnd, bool) {
	switch ep.Kind {
	case policylib.EndpointPod:
		for _, p := range s.Pods {
			if p.Namespace != ep.Namespace || p.Name != ep.Name || !refPodExists(p) {
				continue
			}
			ips := refPodIPs(p)
			var end refEnd
			if len(ips) > 0 {
				end.ip = ips[0]
			}
			if !p.Spec.HostNetwork {
				end.pod, end.ips = p, ips
			}
			return end, true
		}
	case policylib.EndpointNode:
		for _, n := range s.Nodes {
			if n.Name != ep.Name {
				continue
			}
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
					return refEnd{ip: net.ParseIP(a.Address)}, true
				}
			}
		}
	case policylib.EndpointAddr:
		ip := net.ParseIP(ep.Addr.String())
		for _, p := range s.Pods {
			if !refPodExists(p) || p.Spec.HostNetwork {
				continue
			}
			ips := refPodIPs(p)
			for _, pip := range ips {
				if pip.Equal(ip) {
					return refEnd{pod: p, ips: ips, ip: ip}, true
				}
			}
		}
		return refEnd{ip: ip}, true
	}
	return refEnd{}, false
}

// refPodExists: a pod that has finished takes no traffic.
func refPodExists(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// refPodIPs returns status.podIP followed by the rest of status.podIPs.
func refPodIPs(p *corev1.Pod) []net.IP {
	var ips []net.IP
	add := func(s string) {
		ip := net.ParseIP(s)
		if ip == nil {
			panic(fmt.Sprintf("reference: pod %s/%s has invalid IP %q", p.Namespace, p.Name, s))
		}
		for _, have := range ips {
			if have.Equal(ip) {
				return
			}
		}
		ips = append(ips, ip)
	}
	if p.Status.PodIP != "" {
		add(p.Status.PodIP)
	}
	for _, a := range p.Status.PodIPs {
		add(a.IP)
	}
	return ips
}

func refIPOfFamily(ips []net.IP, like net.IP) net.IP {
	for _, ip := range ips {
		if (ip.To4() != nil) == (like.To4() != nil) {
			return ip
		}
	}
	return nil
}

// refDirectionAllows judges one direction on pod self. other is the far end;
// dstPod is the flow's destination pod, on which named ports are looked up.
func refDirectionAllows(s *policylib.Snapshot, ipBlockMatchesPods bool, dir networkingv1.PolicyType, self *corev1.Pod, other refEnd, dstPod *corev1.Pod, proto policylib.Protocol, port int32) bool {
	isolated := false
	for _, np := range s.Policies {
		if np.Namespace != self.Namespace {
			continue
		}
		if !refPolicyHasType(np, dir) {
			continue
		}
		if !refSelectorMatches(&np.Spec.PodSelector, self.Labels) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if refPortsMatch(r.Ports, dstPod, proto, port) && refPeersMatch(s, ipBlockMatchesPods, np.Namespace, r.From, other) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if refPortsMatch(r.Ports, dstPod, proto, port) && refPeersMatch(s, ipBlockMatchesPods, np.Namespace, r.To, other) {
					return true
				}
			}
		}
	}
	return !isolated
}

// refPolicyHasType applies the API default for an omitted policyTypes:
// Ingress always, Egress when there are egress rules.
func refPolicyHasType(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range types {
		if t == dir {
			return true
		}
	}
	return false
}

func refPeersMatch(s *policylib.Snapshot, ipBlockMatchesPods bool, policyNamespace string, peers []networkingv1.NetworkPolicyPeer, other refEnd) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			if other.ip == nil {
				continue
			}
			if other.pod != nil && !ipBlockMatchesPods {
				continue
			}
			if refInIPBlock(peer.IPBlock, other.ip) {
				return true
			}
			continue
		}
		if other.pod == nil {
			continue
		}
		if peer.NamespaceSelector == nil {
			if other.pod.Namespace != policyNamespace {
				continue
			}
		} else if !refSelectorMatches(peer.NamespaceSelector, refNamespaceLabels(s, other.pod.Namespace)) {
			continue
		}
		if peer.PodSelector != nil && !refSelectorMatches(peer.PodSelector, other.pod.Labels) {
			continue
		}
		return true
	}
	return false
}

func refInIPBlock(b *networkingv1.IPBlock, ip net.IP) bool {
	_, cidr, err := net.ParseCIDR(b.CIDR)
	if err != nil {
		panic(fmt.Sprintf("reference: bad cidr %q: %v", b.CIDR, err))
	}
	if !cidr.Contains(ip) {
		return false
	}
	for _, ex := range b.Except {
		_, n, err := net.ParseCIDR(ex)
		if err != nil {
			panic(fmt.Sprintf("reference: bad except %q: %v", ex, err))
		}
		if n.Contains(ip) {
			return false
		}
	}
	return true
}

func refPortsMatch(ports []networkingv1.NetworkPolicyPort, dstPod *corev1.Pod, proto policylib.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true // every port of every protocol, ICMP included
	}
	if proto == policylib.ICMP {
		return false // ICMP has no ports, so a rule listing ports never allows it
	}
	flowProto := corev1.Protocol(proto.String())
	for _, p := range ports {
		ruleProto := corev1.ProtocolTCP
		if p.Protocol != nil {
			ruleProto = *p.Protocol
		}
		if ruleProto != flowProto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.Int:
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if p.Port.IntVal <= port && port <= end {
				return true
			}
		default:
			if dstPod != nil && refPodHasNamedPort(dstPod, p.Port.StrVal, ruleProto, port) {
				return true
			}
		}
	}
	return false
}

// refPodHasNamedPort looks a named port up on the pod's containers and its
// sidecars (init containers with restartPolicy Always, which keep running and
// serve alongside them); a plain init container has exited by then.
func refPodHasNamedPort(p *corev1.Pod, name string, proto corev1.Protocol, port int32) bool {
	containers := slices.Clone(p.Spec.Containers)
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	for _, c := range containers {
		for _, cp := range c.Ports {
			cpProto := cp.Protocol
			if cpProto == "" {
				cpProto = corev1.ProtocolTCP
			}
			if cp.Name == name && cpProto == proto && cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

// refNamespaceLabels returns a namespace's labels as the API server keeps
// them: with kubernetes.io/metadata.name set to its name. A namespace with no
// object in the snapshot has only that label.
func refNamespaceLabels(s *policylib.Snapshot, name string) map[string]string {
	out := map[string]string{}
	for _, ns := range s.Namespaces {
		if ns.Name == name {
			for k, v := range ns.Labels {
				out[k] = v
			}
		}
	}
	out["kubernetes.io/metadata.name"] = name
	return out
}

// refSelectorMatches uses apimachinery's selector as the oracle. Callers
// handle a nil peer selector themselves: for apimachinery nil selects nothing.
func refSelectorMatches(ls *metav1.LabelSelector, l map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		panic(fmt.Sprintf("reference: bad selector %v: %v", ls, err))
	}
	return sel.Matches(labels.Set(l))
}
