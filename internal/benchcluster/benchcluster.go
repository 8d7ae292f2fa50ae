// Package benchcluster generates the synthetic clusters podwall's benchmarks
// share, so the library's, the enforcer's and the agent's figures describe
// the same cluster.
package benchcluster

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

// Large is the cluster: 10,000 pods in 100 namespaces, 1,000 policies.
var Large = Cluster{Namespaces: 100, PodsPerNS: 100, Policies: 1000}

// Cluster describes a synthetic cluster shaped like the anchors'
// measurements: namespaces of pods with app/tier labels and named ports, and
// per-app policies with pod, namespace, ipBlock peers and numeric, named and
// ranged ports.
type Cluster struct {
	Namespaces, PodsPerNS, Policies int
	Skewed                          bool // every policy in the first namespace
}

// Snapshot generates the cluster; the same Cluster always gives the same objects.
func (c Cluster) Snapshot() policylib.Snapshot {
	var s policylib.Snapshot
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range c.Namespaces {
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("ns-%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("team-%d", i%10), "env": [...]string{"prod", "dev"}[i%2]},
		}})
		for j := range c.PodsPerNS {
			n := i*c.PodsPerNS + j
			s.Pods = append(s.Pods, Pod(fmt.Sprintf("ns-%d", i), fmt.Sprintf("pod-%d", j),
				map[string]string{"app": fmt.Sprintf("app-%d", j%c.apps()), "tier": [...]string{"web", "api", "db"}[j%3], "version": fmt.Sprint(j % 2)},
				netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})))
		}
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	for k := range c.Policies {
		ns := k % c.Namespaces
		if c.Skewed {
			ns = 0
		}
		app := (k / c.Namespaces) % c.apps()
		if c.Skewed {
			app = k % c.apps()
		}
		end := int32(9100)
		np := &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", ns), Name: fmt.Sprintf("policy-%d", k)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", app)}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{
					{
						From: []networkingv1.NetworkPolicyPeer{
							{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}},
							{
								NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", rng.IntN(10))}},
								PodSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api", "web"}}}},
							},
						},
						Ports: []networkingv1.NetworkPolicyPort{
							{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}},
							{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 9000}, EndPort: &end},
						},
					},
					{
						From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.1.0/24"}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 443}}},
					},
				},
			},
		}
		if k%4 == 0 {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
				{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &intstr.IntOrString{IntVal: 53}}}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
			}
		}
		s.Policies = append(s.Policies, np)
	}
	return s
}

// apps is the number of distinct app labels per namespace: in the skewed
// cluster every pod of the crowded namespace has its own app, so each is
// selected by policies/podsPerNS policies.
func (c Cluster) apps() int {
	if c.Skewed {
		return c.PodsPerNS
	}
	return 20
}

// Pod is a generated pod: labels, an address and the named ports http
// (8080) and metrics (9090).
func Pod(ns, name string, labels map[string]string, a netip.Addr) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: a.String()},
	}
}

// Local is one node's share of the pods: n of them (110 is the kubelet's
// default maximum) spread evenly over the namespaces.
func (c Cluster) Local(n int) []types.NamespacedName {
	total := c.Namespaces * c.PodsPerNS
	out := make([]types.NamespacedName, 0, n)
	for i := range n {
		k := i * total / n
		out = append(out, types.NamespacedName{Namespace: fmt.Sprintf("ns-%d", k/c.PodsPerNS), Name: fmt.Sprintf("pod-%d", k%c.PodsPerNS)})
	}
	return out
}

// Extra is a pod outside the cluster's generated ones that many peers
// select (tier web): the "one pod added elsewhere" of the update benchmarks.
func Extra() *corev1.Pod {
	return Pod("ns-5", "extra", map[string]string{"app": "app-1", "tier": "web", "version": "0"}, netip.MustParseAddr("10.0.200.1"))
}
