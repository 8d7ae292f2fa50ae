package policylib_test

// A port of every connectivity case of the upstream Kubernetes NetworkPolicy
// e2e suite, test/e2e/network/netpol/network_policy.go in
// kubernetes/kubernetes (its newest revision, which gives each case its own
// pod topology), as table-driven tests of the engine. Each case keeps the
// upstream ginkgo Context and It titles verbatim, builds the same policies
// with the same builders, changes the cluster in the same order through the
// engine's incremental Set*/Delete* calls, and checks the same truth tables
// (expect-all, then the same Expect/ExpectPeer/ExpectAll* overrides) on the
// same port and protocol. The model helpers are in e2e_model_test.go.
//
// Every case runs four times: on IPv4 and on IPv6 single-stack clusters,
// and on the full 9-pod model (x, y, z times a, b, c; a 9x9 truth table) as
// well as on the smaller pod topology the newest upstream revision declares
// for the case. Two cases set an expectation for a pod their newest upstream
// topology no longer creates; the lines the 9-pod revisions had for it are
// kept, marked, so the 9x9 table is exact (they do nothing on the upstream
// topology).
//
// Deliberate differences from upstream:
//   - Loopback (a pod to itself) is checked too. Upstream ignores it because
//     CNIs disagree on it; the engine applies policy to it like to any other
//     pair, and upstream's expectations are right for it in every case.
//   - Each pod serves TCP, UDP and SCTP on 80 and 81 (named ports
//     serve-<port>-<protocol>); upstream starts only the containers a case
//     probes. No case's result depends on it.
//   - Upstream probes each pod's ClusterIP Service; the engine's Matrix is
//     pod to pod after translation, and every cell is also checked through
//     ResolveService and Decide, the path a probe takes.
//
// Cases left out: none. Every connectivity case of network_policy.go can be
// expressed as flows (the Service probes included); the API-only tests of
// network_policy_api.go and the legacy suite of network_legacy.go are not
// part of it.

import (
	"fmt"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// e2eCase is one upstream It.
type e2eCase struct {
	context string   // the ginkgo Context, verbatim
	name    string   // the It title, verbatim
	pods    []string // the pod topology of the newest upstream revision
	run     func(c *e2eCluster)
}

func TestE2ENetworkPolicy(t *testing.T) {
	cases := e2eCases()
	seen := map[string]bool{}
	for _, tc := range cases {
		key := tc.context + "/" + tc.name
		if seen[key] {
			t.Fatalf("duplicate case %q", key)
		}
		seen[key] = true
	}
	var contexts []string
	for _, tc := range cases {
		if !slices.Contains(contexts, tc.context) {
			contexts = append(contexts, tc.context)
		}
	}
	for _, ctx := range contexts {
		t.Run(ctx, func(t *testing.T) {
			for _, tc := range cases {
				if tc.context != ctx {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					for _, family := range []e2eFamily{e2eIPv4, e2eIPv6} {
						for _, topo := range []struct {
							name string
							pods []string
						}{{"9x9", nil}, {"upstream-topology", tc.pods}} {
							t.Run(fmt.Sprintf("%s/%s", family, topo.name), func(t *testing.T) {
								c := newE2ECluster(t, family, topo.pods)
								tc.run(c)
								if c.probes == 0 {
									t.Fatal("case probed nothing")
								}
							})
						}
					}
				})
			}
		})
	}
}

// TestE2ECaseCount pins the number of ported upstream cases: 42 TCP cases,
// 3 UDP and 3 SCTP.
func TestE2ECaseCount(t *testing.T) {
	count := map[string]int{}
	for _, tc := range e2eCases() {
		count[tc.context]++
	}
	want := map[string]int{
		"NetworkPolicy between server and client":            42,
		"NetworkPolicy between server and client using UDP":  3,
		"NetworkPolicy between server and client using SCTP": 3,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("cases per context = %v, want %v", count, want)
	}
}

func e2eCases() []e2eCase {
	const (
		ctxTCP  = "NetworkPolicy between server and client"
		ctxUDP  = "NetworkPolicy between server and client using UDP"
		ctxSCTP = "NetworkPolicy between server and client using SCTP"

		namespaceLabelKey = "kubernetes.io/metadata.name"
	)
	protocolTCP := v1.ProtocolTCP
	protocolUDP := v1.ProtocolUDP
	protocolSCTP := v1.ProtocolSCTP
	type Peer = e2ePeer
	NewPodString := e2ePodString
	GenNetworkPolicyWithNameAndPodSelector := e2eGenNetworkPolicyWithNameAndPodSelector
	GenNetworkPolicyWithNameAndPodMatchLabel := e2eGenNetworkPolicyWithNameAndPodMatchLabel
	SetSpecIngressRules := e2eSetSpecIngressRules
	SetSpecEgressRules := e2eSetSpecEgressRules

	return []e2eCase{
		{
			context: ctxTCP,
			name:    "should support a 'default-deny-ingress' policy",
			pods:    []string{"x/a", "x/b", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-ingress", metav1.LabelSelector{}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should support a 'default-deny-all' policy",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-all", metav1.LabelSelector{}, SetSpecIngressRules(), SetSpecEgressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
			pods:    []string{"x/a", "x/b", "x/c", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				allowedPods := metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: &allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("x-a-allows-x-b", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow ingress traffic for a target",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("having a deny all ingress policy")
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-all", metav1.LabelSelector{}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				// Allow Ingress traffic only to pod x/a from any pod
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}, NamespaceSelector: &metav1.LabelSelector{}})
				allowPolicy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-all-to-a", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPolicy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), true)
				reachability.ExpectAllIngress(NewPodString(nsX, "b"), false)
				// From the 9-pod upstream revisions: x/c is not in the newest topology.
				reachability.ExpectAllIngress(NewPodString(nsX, "c"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow ingress traffic from pods in all namespaces",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{}}})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-from-another-ns", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				// disallow all traffic from the x or z namespaces
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on PodSelector with MatchExpressions",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				allowedPods := metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      "pod",
						Operator: metav1.LabelSelectorOpIn,
						Values:   []string{"b"},
					}},
				}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: &allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("x-a-allows-x-b", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on NamespaceSelector with MatchExpressions",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      namespaceLabelKey,
						Operator: metav1.LabelSelectorOpIn,
						Values:   []string{nsY},
					}},
				}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-match-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				// disallow all traffic from the x or z namespaces
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on PodSelector or NamespaceSelector",
			pods:    []string{"x/a", "x/b", "x/c", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      namespaceLabelKey,
						Operator: metav1.LabelSelectorOpNotIn,
						Values:   []string{nsX},
					}},
				}
				podBAllowlisting := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces}, networkingv1.NetworkPolicyPeer{PodSelector: podBAllowlisting})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-match-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsX, "c"), NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on PodSelector and NamespaceSelector",
			pods:    []string{"x/a", "x/b", "y/a", "y/b", "z/b"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      namespaceLabelKey,
						Operator: metav1.LabelSelectorOpNotIn,
						Values:   []string{nsX},
					}},
				}
				allowedPod := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPod})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-podselector-and-nsselector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsY, "b"), NewPodString(nsX, "a"), true)
				reachability.Expect(NewPodString(nsZ, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
			pods:    []string{"x/a", "x/b", "y/a", "y/b", "y/c"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      namespaceLabelKey,
						Operator: metav1.LabelSelectorOpNotIn,
						Values:   []string{nsX},
					}},
				}
				allowedPod := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      "pod",
						Operator: metav1.LabelSelectorOpIn,
						Values:   []string{"b", "c"},
					}},
				}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPod})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-z-pod-b-c", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.Expect(NewPodString(nsY, "a"), NewPodString(nsX, "a"), false)
				// From the 9-pod upstream revisions: z/a is not in the newest topology.
				reachability.Expect(NewPodString(nsZ, "a"), NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on any PodSelectors",
			pods:    []string{"x/a", "x/b", "x/c"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				for _, label := range []map[string]string{{"pod": "b"}, {"pod": "c"}} {
					ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: label}})
				}
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-x-pod-b-c", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				// Connect Pods b and c to pod a from namespace nsX
				reachability.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				reachability.Expect(NewPodString(nsX, "c"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			pods:    []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				allowedPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-pod-a-via-namespace-pod-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsY, "a"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on Ports",
			pods:    []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				c.By("Creating a network allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)")
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolTCP})
				allowPort81Policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPort81Policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsY}, &Peer{Namespace: nsX, Pod: "a"}, true)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce multiple, stacked policies with overlapping podSelectors",
			pods:    []string{"x/a", "x/b", "y/a", "y/b", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				c.By("Creating a network allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)")
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolTCP})
				allowPort81Policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPort81Policy, nsX)

				reachabilityALLOW := c.NewReachability(true)
				reachabilityALLOW.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachabilityALLOW.ExpectPeer(&Peer{Namespace: nsY}, &Peer{Namespace: nsX, Pod: "a"}, true)
				reachabilityALLOW.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)

				c.By("Verifying traffic on port 81.")
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityALLOW)

				reachabilityDENY := c.NewReachability(true)
				reachabilityDENY.ExpectAllIngress(NewPodString(nsX, "a"), false)

				c.By("Verifying traffic on port 80.")
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityDENY)

				ingressRule = networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 80}, Protocol: &protocolTCP})
				allowPort80Policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector-80", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPort80Policy, nsX)

				c.By("Verifying that we can add a policy to unblock port 80")
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityALLOW)
			},
		},
		{
			context: ctxTCP,
			name:    "should support allow-all policy",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Creating a network policy which allows all traffic.")
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-all", map[string]string{}, SetSpecIngressRules(networkingv1.NetworkPolicyIngressRule{}))
				c.CreatePolicy(policy, nsX)

				c.By("Testing pods can connect to both ports when an 'allow-all' policy is present.")
				reachability := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow ingress access on one named port",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Blocking all ports other then 81 in the entire namespace")
				IngressRules := networkingv1.NetworkPolicyIngressRule{}
				IngressRules.Ports = append(IngressRules.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "serve-81-tcp"}})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-all", map[string]string{}, SetSpecIngressRules(IngressRules))
				c.CreatePolicy(policy, nsX)

				reachabilityPort81 := c.NewReachability(true)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityPort81)

				// disallow all traffic to the x namespace
				reachabilityPort80 := c.NewReachability(true)
				reachabilityPort80.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityPort80)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow ingress access from namespace on one named port",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "serve-80-tcp"}, Protocol: &protocolTCP})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector-80", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				// disallow all traffic from the x or z namespaces
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)

				c.By("Verify that port 80 is allowed for namespace y")
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				c.By("Verify that port 81 is blocked for all namespaces including y")
				reachabilityFAIL := c.NewReachability(true)
				reachabilityFAIL.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityFAIL)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow egress access on one named port",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				egressRule := networkingv1.NetworkPolicyEgressRule{}
				egressRule.Ports = append(egressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "serve-80-tcp"}})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-egress", map[string]string{}, SetSpecEgressRules(egressRule))
				c.CreatePolicy(policy, nsX)

				reachabilityPort80 := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityPort80)

				// meanwhile no traffic over 81 should work, since our egress policy is on 80
				reachabilityPort81 := c.NewReachability(true)
				reachabilityPort81.ExpectPeer(&Peer{Namespace: nsX}, &Peer{}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityPort81)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce updated policy",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Using the simplest possible mutation: start with allow all, then switch to deny all")
				// part 1) allow all
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-all-mutate-to-deny-all", map[string]string{}, SetSpecIngressRules(networkingv1.NetworkPolicyIngressRule{}))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)

				// part 2) update the policy to deny all
				policy.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
				c.By("update the policy to deny all")
				c.UpdatePolicy(policy, nsX)

				reachabilityDeny := c.NewReachability(true)
				reachabilityDeny.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityDeny)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow ingress access from updated namespace",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{"ns2": "updated"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				// add a new label
				c.By("add label ns2=updated to namespace y")
				c.AddNamespaceLabel(nsY, "ns2", "updated")

				// anything from namespace 'y' should be able to get to x/a
				reachabilityWithLabel := c.NewReachability(true)
				reachabilityWithLabel.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachabilityWithLabel.ExpectPeer(&Peer{Namespace: nsY}, &Peer{}, true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityWithLabel)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow ingress access from updated pod",
			pods:    []string{"x/a", "x/b"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				// add a new label
				matchLabels := map[string]string{"pod": "b", "pod2": "updated"}
				allowedLabels := &metav1.LabelSelector{MatchLabels: matchLabels}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: allowedLabels})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-pod-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				c.AddPodLabels(nsX, "b", matchLabels)

				c.By("x/b is able to reach x/a when label is updated")

				reachabilityWithLabel := c.NewReachability(true)
				reachabilityWithLabel.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachabilityWithLabel.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityWithLabel)
			},
		},
		{
			context: ctxTCP,
			name:    "should deny ingress from pods on other namespaces",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				IngressRules := networkingv1.NetworkPolicyIngressRule{}
				IngressRules.From = append(IngressRules.From, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{}}})
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-empty-policy", metav1.LabelSelector{}, SetSpecIngressRules(IngressRules))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsY}, &Peer{Namespace: nsX}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should deny ingress access to updated pod",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-ingress-via-label-selector",
					metav1.LabelSelector{MatchLabels: map[string]string{"target": "isolated"}}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				c.By("Verify that everything can reach x/a")
				reachability := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				c.By("add label target=isolated to x/a")
				c.AddPodLabels(nsX, "a", map[string]string{"target": "isolated"})

				reachabilityIsolated := c.NewReachability(true)
				reachabilityIsolated.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityIsolated)
			},
		},
		{
			context: ctxTCP,
			name:    "should deny egress from pods based on PodSelector",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-egress-pod-a", metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}, SetSpecEgressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllEgress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should deny egress from all pods in a namespace",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-egress-ns-x", metav1.LabelSelector{}, SetSpecEgressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should work with Ingress, Egress specified together",
			pods:    []string{"x/a", "x/b", "x/c", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				allowedPodLabels := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{PodSelector: allowedPodLabels})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-pod-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))

				// add an egress rule on to it...
				policy.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
					{
						Ports: []networkingv1.NetworkPolicyPort{
							{
								// don't use named ports
								Port: &intstr.IntOrString{Type: intstr.Int, IntVal: 80},
							},
						},
					},
				}
				policy.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
				c.CreatePolicy(policy, nsX)

				reachabilityPort80 := c.NewReachability(true)
				reachabilityPort80.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachabilityPort80.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityPort80)

				c.By("validating that port 81 doesn't work")
				// meanwhile no egress traffic on 81 should work, since our egress policy is on 80
				reachabilityPort81 := c.NewReachability(true)
				reachabilityPort81.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachabilityPort81.ExpectAllEgress(NewPodString(nsX, "a"), false)
				reachabilityPort81.Expect(NewPodString(nsX, "b"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityPort81)
			},
		},
		{
			context: ctxTCP,
			name:    "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
			pods:    []string{"x/a", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				// x/a --> y/a and y/b
				// Egress allowed to y/a only. Egress to y/b should be blocked
				// Ingress on y/a and y/b allow traffic from x/a
				// Expectation: traffic from x/a to y/a allowed only, traffic from x/a to y/b denied by egress policy
				nsX, nsY, _ := c.getK8sNamespaces()

				// Building egress policy for x/a to y/a only
				allowedEgressNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				allowedEgressPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				egressRule1 := networkingv1.NetworkPolicyEgressRule{}
				egressRule1.To = append(egressRule1.To, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedEgressNamespaces, PodSelector: allowedEgressPods})
				egressPolicy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-to-ns-y-pod-a", map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule1))
				c.CreatePolicy(egressPolicy, nsX)

				// Creating ingress policy to allow from x/a to y/a and y/b
				allowedIngressNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsX}}
				allowedIngressPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedIngressNamespaces, PodSelector: allowedIngressPods})
				allowIngressPolicyPodA := GenNetworkPolicyWithNameAndPodMatchLabel("allow-from-xa-on-ya-match-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				allowIngressPolicyPodB := GenNetworkPolicyWithNameAndPodMatchLabel("allow-from-xa-on-yb-match-selector", map[string]string{"pod": "b"}, SetSpecIngressRules(ingressRule))

				c.CreatePolicy(allowIngressPolicyPodA, nsY)
				c.CreatePolicy(allowIngressPolicyPodB, nsY)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX, Pod: "a"}, &Peer{}, false)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsY, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsX, Pod: "a"}, &Peer{Namespace: nsY, Pod: "a"}, true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsY, Pod: "b"}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
			pods:    []string{"x/a", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				allowedPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				egressRule1 := networkingv1.NetworkPolicyEgressRule{}
				egressRule1.To = append(egressRule1.To, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-to-ns-y-pod-a", map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule1))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllEgress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsY, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Protocol: &protocolTCP})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ingress-by-proto", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachabilityTCP := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityTCP)

				reachabilityUDP := c.NewReachability(true)
				reachabilityUDP.ExpectPeer(&Peer{}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(80, v1.ProtocolUDP, reachabilityUDP)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				IngressRules := networkingv1.NetworkPolicyIngressRule{}
				IngressRules.Ports = append(IngressRules.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.Int, IntVal: 80}})
				policyAllowOnlyPort80 := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ingress-port-80", map[string]string{}, SetSpecIngressRules(IngressRules))
				c.CreatePolicy(policyAllowOnlyPort80, nsX)

				c.By("The policy targets port 80 -- so let's make sure traffic on port 81 is blocked")
				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)

				c.By("Allowing all ports")
				policyAllowAll := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ingress", map[string]string{}, SetSpecIngressRules(networkingv1.NetworkPolicyIngressRule{}))
				c.CreatePolicy(policyAllowAll, nsX)

				reachabilityAll := c.NewReachability(true)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityAll)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce multiple egress policies with egress allow-all policy taking precedence",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				egressRule := networkingv1.NetworkPolicyEgressRule{}
				egressRule.Ports = append(egressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{Type: intstr.Int, IntVal: 80}})
				policyAllowPort80 := GenNetworkPolicyWithNameAndPodMatchLabel("allow-egress-port-80", map[string]string{}, SetSpecEgressRules(egressRule))
				c.CreatePolicy(policyAllowPort80, nsX)

				c.By("Making sure ingress doesn't work other than port 80")
				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)

				c.By("Allowing all ports")
				policyAllowAll := GenNetworkPolicyWithNameAndPodMatchLabel("allow-egress", map[string]string{}, SetSpecEgressRules(networkingv1.NetworkPolicyEgressRule{}))
				c.CreatePolicy(policyAllowAll, nsX)

				reachabilityAll := c.NewReachability(true)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachabilityAll)
			},
		},
		{
			context: ctxTCP,
			name:    "should stop enforcing policies after they are deleted",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Creating a network policy for the server which denies all traffic.")
				// Deny all traffic into and out of "x".
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-all", metav1.LabelSelector{}, SetSpecIngressRules(), SetSpecEgressRules())
				c.CreatePolicy(policy, nsX)
				reachability := c.NewReachability(true)

				// Expect all traffic into, and out of "x" to be False.
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{}, false)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				c.By("deleting every network policy")
				c.CleanNetworkPolicies()

				// Now the policy is deleted, we expect all connectivity to work again.
				reachabilityAll := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityAll)
			},
		},
		{
			context: ctxTCP,
			name:    "should allow egress access to server in CIDR block",
			pods:    []string{"x/a", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				// Getting podServer's status to get podServer's IP, to create the CIDR
				podServerCIDR := e2eHostCIDR(c.PodIP(nsY, "b"))
				egressRule1 := networkingv1.NetworkPolicyEgressRule{}
				egressRule1.To = append(egressRule1.To, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: podServerCIDR}})
				policyAllowCIDR := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-cidr-egress-rule",
					map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule1))
				c.CreatePolicy(policyAllowCIDR, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllEgress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsY, "b"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce except clause while egress access to server in CIDR block",
			pods:    []string{"x/a", "x/b", "x/c"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				// Getting podServer's status to get podServer's IP, to create the CIDR with except clause
				podBIP := c.PodIP(nsX, "b")

				// Create a rule that allows egress to a large set of IPs around
				// podB, but not podB itself.
				podServerAllowCIDR := e2eMakeLargeCIDRForIP(podBIP)
				podServerExceptList := []string{e2eHostCIDR(podBIP)}

				egressRule1 := networkingv1.NetworkPolicyEgressRule{}
				egressRule1.To = append(egressRule1.To, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: podServerAllowCIDR, Except: podServerExceptList}})
				policyAllowCIDR := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-cidr-egress-rule", map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule1))
				c.CreatePolicy(policyAllowCIDR, nsX)

				reachability := c.NewReachability(true)
				reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsX, "b"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
			pods:    []string{"x/a", "x/b", "x/c"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				// Getting podServer's status to get podServer's IP, to create the CIDR with except clause
				podBIP := c.PodIP(nsX, "b")

				// Create a rule that allows egress to a large set of IPs around
				// podB, but not podB itself.
				podServerAllowCIDR := e2eMakeLargeCIDRForIP(podBIP)
				podServerExceptList := []string{e2eHostCIDR(podBIP)}
				egressRule1 := networkingv1.NetworkPolicyEgressRule{}
				egressRule1.To = append(egressRule1.To, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: podServerAllowCIDR, Except: podServerExceptList}})
				policyAllowCIDR := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-cidr-egress-rule",
					map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule1))
				c.CreatePolicy(policyAllowCIDR, nsX)

				reachability := c.NewReachability(true)
				reachability.Expect(NewPodString(nsX, "a"), NewPodString(nsX, "b"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)

				// Create a second NetworkPolicy which allows access to podB
				egressRule3 := networkingv1.NetworkPolicyEgressRule{}
				egressRule3.To = append(egressRule3.To, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: e2eHostCIDR(podBIP)}})
				allowPolicy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-cidr-egress-rule",
					map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule3))
				c.By("update the policy to allow only x/b's address")
				c.UpdatePolicy(allowPolicy, nsX)

				reachabilityAllow := c.NewReachability(true)
				reachabilityAllow.ExpectAllEgress(NewPodString(nsX, "a"), false)
				reachabilityAllow.Expect(NewPodString(nsX, "a"), NewPodString(nsX, "b"), true)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachabilityAllow)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				/*
					Test steps:
					1. Verify every pod in every namespace can talk to each other
					   - including a -> b and b -> a
					2. Create a policy to allow egress a -> b (target = a)
					3. Create a policy to *deny* ingress b -> a (target = a)
					4. Verify a -> b allowed; b -> a blocked
				*/
				targetLabels := map[string]string{"pod": "a"}

				c.By("Creating a network policy for pod-a which allows Egress traffic to pod-b.")
				allowEgressPolicy := GenNetworkPolicyWithNameAndPodSelector("allow-egress-for-target",
					metav1.LabelSelector{MatchLabels: targetLabels}, SetSpecEgressRules(networkingv1.NetworkPolicyEgressRule{}))
				c.CreatePolicy(allowEgressPolicy, nsX)

				allowEgressReachability := c.NewReachability(true)
				c.ValidateOrFail(80, v1.ProtocolTCP, allowEgressReachability)

				c.By("Creating a network policy for pod-a that denies traffic from pod-b.")
				denyAllIngressPolicy := GenNetworkPolicyWithNameAndPodSelector("deny-ingress-via-label-selector", metav1.LabelSelector{MatchLabels: targetLabels}, SetSpecIngressRules())
				c.CreatePolicy(denyAllIngressPolicy, nsX)

				denyIngressToXReachability := c.NewReachability(true)
				denyIngressToXReachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(80, v1.ProtocolTCP, denyIngressToXReachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Creating a default-deny ingress policy.")
				// Empty podSelector blocks the entire namespace
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-ingress", metav1.LabelSelector{}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				c.By("Creating a network policy for the server which allows traffic only via SCTP on port 81.")
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolSCTP})
				policy = GenNetworkPolicyWithNameAndPodMatchLabel("allow-only-sctp-ingress-on-port-81", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				c.By("Trying to connect to TCP port 81, which should be blocked by the deny-ingress policy.")
				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				c.By("Creating a network policy for the server which allows traffic only via SCTP on port 80.")
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 80}, Protocol: &protocolSCTP})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-only-sctp-ingress-on-port-80", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				c.By("Trying to connect to TCP port 81, which should be blocked by implicit isolation.")
				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should not allow access by TCP when a policy specifies only UDP",
			pods:    []string{"x/a", "y/a"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolUDP})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-only-udp-ingress-on-port-81", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				c.By("Creating a network policy for the server which allows traffic only via UDP on port 81.")

				// Probing with TCP, so all traffic should be dropped.
				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				c.ValidateOrFail(81, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{v1.LabelMetadataName: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-client-a-via-ns-selector-for-immutable-ns-label", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},
		{
			context: ctxTCP,
			name:    "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key:      v1.LabelMetadataName,
						Operator: metav1.LabelSelectorOpNotIn,
						Values:   []string{nsY},
					}},
				}
				egressRule := networkingv1.NetworkPolicyEgressRule{}
				egressRule.To = append(egressRule.To, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-match-selector-for-immutable-ns-label", map[string]string{"pod": "a"}, SetSpecEgressRules(egressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX, Pod: "a"}, &Peer{Namespace: nsY}, false)
				c.ValidateOrFail(80, v1.ProtocolTCP, reachability)
			},
		},

		// ---- Netpol [LinuxOnly]: UDP ----
		{
			context: ctxUDP,
			name:    "should support a 'default-deny-ingress' policy",
			pods:    []string{"x/a", "x/b", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-all", metav1.LabelSelector{}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolUDP, reachability)
			},
		},
		{
			context: ctxUDP,
			name:    "should enforce policy based on Ports",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				c.By("Creating a network policy allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)")
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolUDP})
				allowPort81Policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ingress-on-port-81-ns-x", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPort81Policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(81, v1.ProtocolUDP, reachability)
			},
		},
		{
			context: ctxUDP,
			name:    "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				allowedPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-pod-a-via-namespace-pod-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsY, "a"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolUDP, reachability)
			},
		},

		// ---- Netpol [Feature:SCTPConnectivity] [LinuxOnly]: SCTP ----
		{
			context: ctxSCTP,
			name:    "should support a 'default-deny-ingress' policy",
			pods:    []string{"x/a", "x/b", "y/a", "y/b"},
			run: func(c *e2eCluster) {
				nsX, _, _ := c.getK8sNamespaces()
				policy := GenNetworkPolicyWithNameAndPodSelector("deny-all", metav1.LabelSelector{}, SetSpecIngressRules())
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{}, &Peer{Namespace: nsX}, false)
				c.ValidateOrFail(80, v1.ProtocolSCTP, reachability)
			},
		},
		{
			context: ctxSCTP,
			name:    "should enforce policy based on Ports",
			pods:    []string{"x/a", "x/b", "y/a", "z/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, nsZ := c.getK8sNamespaces()
				c.By("Creating a network allowPort81Policy which only allows allow listed namespaces (y) to connect on exactly one port (81)")
				allowedLabels := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedLabels})
				ingressRule.Ports = append(ingressRule.Ports, networkingv1.NetworkPolicyPort{Port: &intstr.IntOrString{IntVal: 81}, Protocol: &protocolSCTP})
				allowPort81Policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ingress-on-port-81-ns-x", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(allowPort81Policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectPeer(&Peer{Namespace: nsX}, &Peer{Namespace: nsX, Pod: "a"}, false)
				reachability.ExpectPeer(&Peer{Namespace: nsZ}, &Peer{Namespace: nsX, Pod: "a"}, false)
				c.ValidateOrFail(81, v1.ProtocolSCTP, reachability)
			},
		},
		{
			context: ctxSCTP,
			name:    "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			pods:    []string{"x/a", "x/b", "y/a"},
			run: func(c *e2eCluster) {
				nsX, nsY, _ := c.getK8sNamespaces()
				allowedNamespaces := &metav1.LabelSelector{MatchLabels: map[string]string{namespaceLabelKey: nsY}}
				allowedPods := &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}
				ingressRule := networkingv1.NetworkPolicyIngressRule{}
				ingressRule.From = append(ingressRule.From, networkingv1.NetworkPolicyPeer{NamespaceSelector: allowedNamespaces, PodSelector: allowedPods})
				policy := GenNetworkPolicyWithNameAndPodMatchLabel("allow-ns-y-pod-a-via-namespace-pod-selector", map[string]string{"pod": "a"}, SetSpecIngressRules(ingressRule))
				c.CreatePolicy(policy, nsX)

				reachability := c.NewReachability(true)
				reachability.ExpectAllIngress(NewPodString(nsX, "a"), false)
				reachability.Expect(NewPodString(nsY, "a"), NewPodString(nsX, "a"), true)
				c.ValidateOrFail(80, v1.ProtocolSCTP, reachability)
			},
		},
	}
}
