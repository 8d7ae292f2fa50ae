package policylib_test

// Small builders for the policylib tests. Every name starts with "t" so they
// do not clash with other test helpers in this package.

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

// tLabels builds a label map from key, value pairs.
func tLabels(kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("tLabels: odd number of arguments")
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// tNS is a namespace with labels.
func tNS(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// tCPort is a named container port; proto "" means TCP as in the API.
func tCPort(name string, proto corev1.Protocol, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port}
}

// tPod is a running pod. ip may be "" (no address yet) or a comma-free list
// of one address; use tPodIPs for dual stack.
func tPod(ns, name string, labels map[string]string, ip string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   "node1",
			Containers: []corev1.Container{{Name: "c", Ports: ports}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if ip != "" {
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	return p
}

// tPodIPs is tPod with several addresses (dual stack).
func tPodIPs(ns, name string, labels map[string]string, ips []string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := tPod(ns, name, labels, ips[0], ports...)
	p.Status.PodIPs = nil
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

// tHostPod is a hostNetwork pod with its node's address.
func tHostPod(ns, name string, labels map[string]string, ip string) *corev1.Pod {
	p := tPod(ns, name, labels, ip)
	p.Spec.HostNetwork = true
	return p
}

// tNode is a node with one InternalIP.
func tNode(name, ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name},
			{Type: corev1.NodeInternalIP, Address: ip},
		}},
	}
}

// ---- selectors ----

// tSel is a selector with matchLabels from key, value pairs; tSel() is the
// empty selector {} that matches everything.
func tSel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	if len(kv) > 0 {
		s.MatchLabels = tLabels(kv...)
	}
	return s
}

// tExpr is one matchExpressions requirement.
func tExpr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

// tSelExpr is a selector with only matchExpressions.
func tSelExpr(exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: exprs}
}

// ---- peers and ports ----

// tPodPeer selects pods of the policy's namespace.
func tPodPeer(sel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: sel}
}

// tNSPeer selects every pod of the namespaces nsSel selects.
func tNSPeer(nsSel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel}
}

// tNSPodPeer selects pods matching podSel in namespaces matching nsSel.
func tNSPodPeer(nsSel, podSel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel, PodSelector: podSel}
}

// tIPPeer is an ipBlock peer.
func tIPPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// tPeers collects peers; tPeers() is nil (the field omitted). Use
// tNoPeers for an explicit empty list.
func tPeers(peers ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
	return peers
}

// tNoPeers returns `from: []` / `to: []`: present but empty.
func tNoPeers() []networkingv1.NetworkPolicyPeer { return []networkingv1.NetworkPolicyPeer{} }

// tPort is a policy port. proto "" leaves protocol unset (the API default,
// TCP); port is an int, a string (named port) or nil (every port).
func tPort(proto corev1.Protocol, port any) networkingv1.NetworkPolicyPort {
	var pp networkingv1.NetworkPolicyPort
	if proto != "" {
		pp.Protocol = &proto
	}
	switch v := port.(type) {
	case nil:
	case int:
		p := intstr.FromInt32(int32(v))
		pp.Port = &p
	case string:
		p := intstr.FromString(v)
		pp.Port = &p
	default:
		panic(fmt.Sprintf("tPort: port %T", port))
	}
	return pp
}

// tPortRange is a numeric port with endPort.
func tPortRange(proto corev1.Protocol, port, end int32) networkingv1.NetworkPolicyPort {
	pp := tPort(proto, int(port))
	pp.EndPort = &end
	return pp
}

// ---- policies ----

// tPolOpt edits a policy under construction.
type tPolOpt func(*networkingv1.NetworkPolicy)

// tPolicy is a NetworkPolicy selecting podSel (nil means {}) in ns.
func tPolicy(ns, name string, podSel *metav1.LabelSelector, opts ...tPolOpt) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if podSel != nil {
		np.Spec.PodSelector = *podSel
	}
	for _, o := range opts {
		o(np)
	}
	return np
}

// tIngress appends an ingress rule.
func tIngress(from []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) tPolOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: from, Ports: ports})
	}
}

// tEgress appends an egress rule.
func tEgress(to []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) tPolOpt {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: ports})
	}
}

// tNoIngressRules sets `ingress: []`; tNoEgressRules sets `egress: []`.
func tNoIngressRules() tPolOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{} }
}

func tNoEgressRules() tPolOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{} }
}

// tTypes sets policyTypes.
func tTypes(types ...networkingv1.PolicyType) tPolOpt {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = types }
}

const (
	tIn  = networkingv1.PolicyTypeIngress
	tOut = networkingv1.PolicyTypeEgress
)

// ---- engines and flows ----

// tBuild builds an engine and fails the test on any error.
func tBuild(t testing.TB, s policylib.Snapshot, opts ...policylib.Option) *policylib.Engine {
	t.Helper()
	e, err := policylib.Build(s, opts...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return e
}

// tEP parses an endpoint ("ns/pod", "node/NAME" or an address).
func tEP(t testing.TB, s string) policylib.Endpoint {
	t.Helper()
	ep, err := policylib.ParseEndpoint(s)
	if err != nil {
		t.Fatalf("ParseEndpoint(%q): %v", s, err)
	}
	return ep
}

// tFlow is a flow between two endpoint strings.
func tFlow(t testing.TB, from, to string, proto policylib.Protocol, port int32) policylib.Flow {
	t.Helper()
	return policylib.Flow{From: tEP(t, from), To: tEP(t, to), Protocol: proto, Port: port}
}

// tDecide decides a flow and fails the test on error.
func tDecide(t testing.TB, e *policylib.Engine, from, to string, proto policylib.Protocol, port int32) policylib.Decision {
	t.Helper()
	f := tFlow(t, from, to, proto, port)
	d, err := e.Decide(f)
	if err != nil {
		t.Fatalf("Decide(%s): %v", f, err)
	}
	return d
}
