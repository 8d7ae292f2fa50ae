package policylib_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podwall/podwall/policylib"
)

const (
	tTCP  = policylib.TCP
	tUDP  = policylib.UDP
	tSCTP = policylib.SCTP
	tICMP = policylib.ICMP
)

const tOutside = "203.0.113.7"

// tBaseSnapshot is the cluster every semantic case runs on:
//
//	default (no labels): web, api, db, cache, nolabel, client, hostpod (hostNetwork)
//	prod  (env=prod):    client, web
//	dev   (env=dev):     client
//	implied (no Namespace object): x
//	nodes node1 192.168.0.1 (hostpod's address), node2 192.168.0.2
func tBaseSnapshot() policylib.Snapshot {
	return policylib.Snapshot{
		Namespaces: []*corev1.Namespace{
			tNS("default", nil),
			tNS("prod", tLabels("env", "prod")),
			tNS("dev", tLabels("env", "dev")),
		},
		Nodes: []*corev1.Node{tNode("node1", "192.168.0.1"), tNode("node2", "192.168.0.2")},
		Pods: []*corev1.Pod{
			tPodIPs("default", "web", tLabels("app", "web", "tier", "frontend", "role", "backend"),
				[]string{"10.0.0.10", "fd00::10"},
				tCPort("http", corev1.ProtocolTCP, 80), tCPort("metrics", "", 9090),
				tCPort("dns", corev1.ProtocolUDP, 53), tCPort("sig", corev1.ProtocolSCTP, 7777)),
			tPodIPs("default", "api", tLabels("app", "api", "role", "backend"),
				[]string{"10.0.0.11", "fd00::11"}, tCPort("http", corev1.ProtocolTCP, 8080)),
			tPod("default", "db", tLabels("app", "db", "tier", "backend"), "10.0.0.12"),
			tPod("default", "nolabel", nil, "10.0.0.13"),
			tPod("default", "cache", tLabels("app", "cache", "tier", "backend"), "10.0.0.14"),
			tPod("default", "client", tLabels("app", "client"), "10.0.0.15"),
			tHostPod("default", "hostpod", tLabels("app", "client"), "192.168.0.1"),
			tPod("prod", "client", tLabels("app", "client"), "10.0.1.10", tCPort("http", corev1.ProtocolTCP, 1234)),
			tPod("prod", "web", tLabels("app", "web"), "10.0.1.11", tCPort("http", corev1.ProtocolTCP, 80)),
			tPod("dev", "client", tLabels("app", "client"), "10.0.2.10"),
			tPod("implied", "x", tLabels("app", "client"), "10.0.3.10"),
		},
	}
}

// tCheck is one flow and whether it must be allowed.
type tCheck struct {
	from, to string
	proto    policylib.Protocol
	port     int32
	want     bool
}

func tRunChecks(t *testing.T, e *policylib.Engine, checks []tCheck) {
	t.Helper()
	for _, c := range checks {
		d := tDecide(t, e, c.from, c.to, c.proto, c.port)
		if d.Allowed != c.want {
			x, _ := e.Explain(tFlow(t, c.from, c.to, c.proto, c.port))
			t.Errorf("%s -> %s %s/%d: allowed=%v, want %v\n%s", c.from, c.to, c.proto, c.port, d.Allowed, c.want, x)
		}
	}
}

var (
	tWebSel = tSel("app", "web")
	tAPISel = tSel("app", "api")
)

func TestSemantics(t *testing.T) {
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		opts     []policylib.Option
		checks   []tCheck
	}{
		// ---- selectors ----
		{
			name: "NotIn matches a pod missing the key",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(tSelExpr(tExpr("tier", metav1.LabelSelectorOpNotIn, "backend"))))))},
			checks: []tCheck{
				{"default/nolabel", "default/web", tTCP, 80, true},
				{"default/api", "default/web", tTCP, 80, true},
				{"default/db", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "DoesNotExist matches a pod missing the key",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(tSelExpr(tExpr("tier", metav1.LabelSelectorOpDoesNotExist))))))},
			checks: []tCheck{
				{"default/nolabel", "default/web", tTCP, 80, true},
				{"default/db", "default/web", tTCP, 80, false},
				{"default/cache", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "Exists needs the key",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(tSelExpr(tExpr("tier", metav1.LabelSelectorOpExists))))))},
			checks: []tCheck{
				{"default/db", "default/web", tTCP, 80, true},
				{"default/nolabel", "default/web", tTCP, 80, false},
				{"default/api", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "In needs the key with a listed value",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(tSelExpr(tExpr("app", metav1.LabelSelectorOpIn, "api", "db"))))))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"default/db", "default/web", tTCP, 80, true},
				{"default/cache", "default/web", tTCP, 80, false},
				{"default/nolabel", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "matchLabels and matchExpressions are ANDed",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(&metav1.LabelSelector{
					MatchLabels:      tLabels("tier", "backend"),
					MatchExpressions: []metav1.LabelSelectorRequirement{tExpr("app", metav1.LabelSelectorOpIn, "db")},
				}))))},
			checks: []tCheck{
				{"default/db", "default/web", tTCP, 80, true},
				{"default/cache", "default/web", tTCP, 80, false}, // tier matches, app does not
				{"default/api", "default/web", tTCP, 80, false},
			},
		},
		{
			name:     "empty podSelector selects every pod of its namespace",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "deny", tSel())},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false},
				{"default/web", "default/db", tTCP, 80, false},
				{"default/web", "default/nolabel", tTCP, 80, false},
				{"prod/client", "prod/web", tTCP, 80, true},
				{"default/web", "prod/web", tTCP, 80, true}, // egress not isolated
			},
		},
		// ---- peers ----
		{
			name: "namespaceSelector and podSelector in one peer are ANDed",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tNSPodPeer(tSel("env", "prod"), tSel("app", "client")))))},
			checks: []tCheck{
				{"prod/client", "default/web", tTCP, 80, true},
				{"dev/client", "default/web", tTCP, 80, false},
				{"prod/web", "default/web", tTCP, 80, false},
				{"default/client", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "two peers are ORed",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tNSPeer(tSel("env", "prod")), tPodPeer(tSel("app", "client")))))},
			checks: []tCheck{
				{"prod/web", "default/web", tTCP, 80, true},
				{"prod/client", "default/web", tTCP, 80, true},
				{"default/client", "default/web", tTCP, 80, true},
				{"dev/client", "default/web", tTCP, 80, false}, // podSelector peer is the policy's namespace only
				{"default/api", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "namespaceSelector {} selects every namespace, but no outside address",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tNSPeer(tSel()))))},
			checks: []tCheck{
				{"dev/client", "default/web", tTCP, 80, true},
				{"implied/x", "default/web", tTCP, 80, true},
				{"default/api", "default/web", tTCP, 80, true},
				{tOutside, "default/web", tTCP, 80, false},
				{"node/node2", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "omitted namespaceSelector means the policy's namespace",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tPodPeer(tSel()))))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"prod/client", "default/web", tTCP, 80, false},
				{"implied/x", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "kubernetes.io/metadata.name is on implied and declared namespaces",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tNSPeer(tSelExpr(tExpr(policylib.NamespaceNameLabel, metav1.LabelSelectorOpIn, "implied", "dev"))))))},
			checks: []tCheck{
				{"implied/x", "default/web", tTCP, 80, true},
				{"dev/client", "default/web", tTCP, 80, true},
				{"prod/client", "default/web", tTCP, 80, false},
			},
		},
		// ---- rules and policyTypes ----
		{
			name:     "ingress omitted denies all ingress",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel)},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false},
				{tOutside, "default/web", tTCP, 80, false},
				{"default/api", "default/web", tICMP, 0, false},
				{"default/web", "default/api", tTCP, 8080, true},
			},
		},
		{
			name:     "ingress: [] denies all ingress",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tNoIngressRules())},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false},
				{"node/node1", "default/web", tTCP, 80, false},
			},
		},
		{
			name:     "ingress: [{}] allows all ingress",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(nil))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"dev/client", "default/web", tUDP, 53, true},
				{tOutside, "default/web", tSCTP, 1, true},
				{"default/api", "default/web", tICMP, 0, true},
			},
		},
		{
			name:     "from: [] is the same as from omitted: every peer",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tNoPeers(), tPort("", 80)))},
			checks: []tCheck{
				{tOutside, "default/web", tTCP, 80, true},
				{"dev/client", "default/web", tTCP, 80, true},
				{"default/api", "default/web", tTCP, 81, false},
			},
		},
		{
			name:     "to: [] is the same as to omitted: every peer",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tTypes(tOut), tEgress(tNoPeers(), tPort("", 443)))},
			checks: []tCheck{
				{"default/web", tOutside, tTCP, 443, true},
				{"default/web", "dev/client", tTCP, 443, true},
				{"default/web", tOutside, tTCP, 80, false},
			},
		},
		{
			name:     "egress: [] without policyTypes does not isolate egress",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tNoEgressRules())},
			checks: []tCheck{
				{"default/web", tOutside, tTCP, 443, true},
				{"default/web", "default/api", tTCP, 8080, true},
				{"default/api", "default/web", tTCP, 80, false}, // it is an ingress policy with no rules
			},
		},
		{
			name:     "policyTypes [Egress] with no egress rules denies all egress and leaves ingress open",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tTypes(tOut))},
			checks: []tCheck{
				{"default/web", tOutside, tTCP, 443, false},
				{"default/web", "default/api", tTCP, 8080, false},
				{"default/web", "default/api", tICMP, 0, false},
				{"default/api", "default/web", tTCP, 80, true},
				{tOutside, "default/web", tTCP, 80, true},
			},
		},
		{
			name: "policyTypes [Egress] ignores ingress rules",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tTypes(tOut),
				tIngress(tPeers(tPodPeer(tSel("app", "nothing")))), tEgress(nil))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"default/web", "default/api", tTCP, 8080, true},
			},
		},
		{
			name: "policyTypes [Ingress] ignores egress rules",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tTypes(tIn),
				tEgress(tPeers(tPodPeer(tSel("app", "nothing")))), tIngress(nil))},
			checks: []tCheck{
				{"default/web", tOutside, tTCP, 443, true},
			},
		},
		{
			name: "egress rules without policyTypes isolate egress too",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tEgress(tPeers(tPodPeer(tAPISel))))},
			checks: []tCheck{
				{"default/web", "default/api", tTCP, 8080, true},
				{"default/web", "default/db", tTCP, 5432, false},
				{"default/api", "default/web", tTCP, 80, false}, // ingress isolated too, no rules
			},
		},
		// ---- ports and protocols ----
		{
			name:     "protocol defaults to TCP",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(nil, tPort("", 53)))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 53, true},
				{"default/api", "default/web", tUDP, 53, false},
				{"default/api", "default/web", tSCTP, 53, false},
			},
		},
		{
			name:     "SCTP is not TCP",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(nil, tPort(corev1.ProtocolSCTP, 7777)))},
			checks: []tCheck{
				{"default/api", "default/web", tSCTP, 7777, true},
				{"default/api", "default/web", tTCP, 7777, false},
				{"default/api", "default/web", tUDP, 7777, false},
			},
		},
		{
			name:     "port omitted with a protocol means every port of that protocol",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(nil, tPort(corev1.ProtocolUDP, nil)))},
			checks: []tCheck{
				{"default/api", "default/web", tUDP, 1, true},
				{"default/api", "default/web", tUDP, 65535, true},
				{"default/api", "default/web", tTCP, 80, false},
				{"default/api", "default/web", tICMP, 0, false},
			},
		},
		{
			name: "endPort range includes both ends",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(nil, tPortRange(corev1.ProtocolTCP, 8000, 8080)))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 7999, false},
				{"default/api", "default/web", tTCP, 8000, true},
				{"default/api", "default/web", tTCP, 8040, true},
				{"default/api", "default/web", tTCP, 8080, true},
				{"default/api", "default/web", tTCP, 8081, false},
				{"default/api", "default/web", tUDP, 8000, false},
			},
		},
		{
			name: "endPort equal to port is one port; range up to 65535",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(nil, tPortRange("", 443, 443), tPortRange(corev1.ProtocolUDP, 65000, 65535)))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 442, false},
				{"default/api", "default/web", tTCP, 443, true},
				{"default/api", "default/web", tTCP, 444, false},
				{"default/api", "default/web", tUDP, 65535, true},
				{"default/api", "default/web", tUDP, 64999, false},
			},
		},
		{
			name: "named port resolves on the destination pod (ingress)",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tSel("role", "backend"),
				tIngress(nil, tPort("", "http")))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"default/api", "default/web", tTCP, 8080, false},
				{"default/web", "default/api", tTCP, 8080, true},
				{"default/web", "default/api", tTCP, 80, false},
			},
		},
		{
			name: "named port resolves on the destination pod (egress)",
			policies: []*networkingv1.NetworkPolicy{tPolicy("prod", "p", tSel("app", "client"), tTypes(tOut),
				tEgress(nil, tPort("", "http")))},
			checks: []tCheck{
				{"prod/client", "default/web", tTCP, 80, true},
				{"prod/client", "default/api", tTCP, 8080, true},
				{"prod/client", "default/api", tTCP, 80, false},
				{"prod/client", "default/web", tTCP, 1234, false}, // the source's own "http"
				{"prod/client", "default/db", tTCP, 80, false},    // no such name there
				{"prod/client", tOutside, tTCP, 80, false},        // not a pod: a name never matches
				{"prod/client", "prod/web", tTCP, 80, true},
			},
		},
		{
			name: "named port with the wrong protocol does not match",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "tcp-dns", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort(corev1.ProtocolTCP, "dns"))),
				tPolicy("default", "udp-metrics", tWebSel, tIngress(tPeers(tPodPeer(tSel("app", "db"))), tPort(corev1.ProtocolUDP, "metrics"))),
			},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 53, false},
				{"default/api", "default/web", tUDP, 53, false},
				{"default/db", "default/web", tTCP, 9090, false},
				{"default/db", "default/web", tUDP, 9090, false},
			},
		},
		{
			name: "named port with the right protocol matches (container port protocol defaults to TCP)",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "p", tWebSel,
					tIngress(tPeers(tPodPeer(tAPISel)), tPort(corev1.ProtocolUDP, "dns"), tPort("", "metrics"), tPort(corev1.ProtocolSCTP, "sig"))),
			},
			checks: []tCheck{
				{"default/api", "default/web", tUDP, 53, true},
				{"default/api", "default/web", tTCP, 9090, true},
				{"default/api", "default/web", tSCTP, 7777, true},
				{"default/api", "default/web", tSCTP, 7778, false},
			},
		},
		{
			name: "named port that resolves to nothing still isolates",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(nil, tPort("", "nope")))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false},
				{"default/api", "default/web", tTCP, 1, false},
				{"default/api", "default/web", tICMP, 0, false},
				{tOutside, "default/web", tTCP, 80, false},
			},
		},
		{
			name: "ICMP is allowed only by a rule without ports",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "ports", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort("", nil), tPort(corev1.ProtocolUDP, nil))),
				tPolicy("default", "noports", tWebSel, tIngress(tPeers(tPodPeer(tSel("app", "db"))))),
			},
			checks: []tCheck{
				{"default/api", "default/web", tICMP, 0, false},
				{"default/api", "default/web", tTCP, 1, true},
				{"default/db", "default/web", tICMP, 0, true},
				{"default/cache", "default/web", tICMP, 0, false},
			},
		},
		// ---- ipBlock ----
		{
			name:     "ipBlock cidr contains",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("203.0.113.0/24"))))},
			checks: []tCheck{
				{"203.0.113.0", "default/web", tTCP, 80, true},
				{"203.0.113.7", "default/web", tTCP, 80, true},
				{"203.0.113.255", "default/web", tTCP, 80, true},
				{"203.0.112.255", "default/web", tTCP, 80, false},
				{"203.0.114.0", "default/web", tTCP, 80, false},
				{"::ffff:203.0.113.7", "default/web", tTCP, 80, true}, // mapped is the IPv4 address
			},
		},
		{
			name: "ipBlock except boundaries (IPv4)",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tIPPeer("172.16.0.0/16", "172.16.1.0/24", "172.16.255.255/32"))))},
			checks: []tCheck{
				{"172.16.0.0", "default/web", tTCP, 80, true},
				{"172.16.0.255", "default/web", tTCP, 80, true},
				{"172.16.1.0", "default/web", tTCP, 80, false},
				{"172.16.1.128", "default/web", tTCP, 80, false},
				{"172.16.1.255", "default/web", tTCP, 80, false},
				{"172.16.2.0", "default/web", tTCP, 80, true},
				{"172.16.255.254", "default/web", tTCP, 80, true},
				{"172.16.255.255", "default/web", tTCP, 80, false},
				{"172.17.0.0", "default/web", tTCP, 80, false},
				{"172.15.255.255", "default/web", tTCP, 80, false},
			},
		},
		{
			name: "ipBlock except boundaries (IPv6)",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tIPPeer("2001:db8::/32", "2001:db8:1::/48"))))},
			checks: []tCheck{
				{"2001:db8::", "default/web", tTCP, 80, true},
				{"2001:db8:0:ffff:ffff:ffff:ffff:ffff", "default/web", tTCP, 80, true},
				{"2001:db8:1::", "default/web", tTCP, 80, false},
				{"2001:db8:1:ffff:ffff:ffff:ffff:ffff", "default/web", tTCP, 80, false},
				{"2001:db8:2::", "default/web", tTCP, 80, true},
				{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "default/web", tTCP, 80, true},
				{"2001:db9::", "default/web", tTCP, 80, false},
				{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "default/web", tTCP, 80, false},
				{tOutside, "default/web", tTCP, 80, false}, // other family
			},
		},
		{
			name:     "ipBlock ::/0 does not match IPv4, 0.0.0.0/0 does not match IPv6",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("::/0")), tPort("", 80)), tIngress(tPeers(tIPPeer("0.0.0.0/0")), tPort("", 443)))},
			checks: []tCheck{
				{"2001:db8::1", "default/web", tTCP, 80, true},
				{tOutside, "default/web", tTCP, 80, false},
				{tOutside, "default/web", tTCP, 443, true},
				{"2001:db8::1", "default/web", tTCP, 443, false},
			},
		},
		{
			name:     "ipBlock matches pod addresses by default",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("10.0.0.0/24"))))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"10.0.0.11", "default/web", tTCP, 80, true},
				{"10.0.0.200", "default/web", tTCP, 80, true},
				{"prod/client", "default/web", tTCP, 80, false},
			},
		},
		{
			name:     "ipBlock does not match pods with WithIPBlockMatchesPods(false)",
			opts:     []policylib.Option{policylib.WithIPBlockMatchesPods(false)},
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("10.0.0.0/24"), tIPPeer("192.168.0.0/24"))))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false},
				{"10.0.0.11", "default/web", tTCP, 80, false}, // a pod's address is the pod
				{"10.0.0.200", "default/web", tTCP, 80, true},
				{"default/hostpod", "default/web", tTCP, 80, true}, // host network: not a pod
				{"node/node2", "default/web", tTCP, 80, true},
			},
		},
		{
			name: "egress ipBlock uses the destination's address of the flow's family",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tAPISel, tTypes(tOut),
				tEgress(tPeers(tIPPeer("fd00::/64"))))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, false}, // IPv4 flow: 10.0.0.10
				{"default/api", "fd00::10", tTCP, 80, true},
				{"default/api", "fd00::99", tTCP, 80, true},
				{"default/api", "10.0.0.10", tTCP, 80, false},
			},
		},
		{
			name: "a pod named by one of its addresses keeps that address's family",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel,
				tIngress(tPeers(tIPPeer("fd00::/64"))))},
			checks: []tCheck{
				{"fd00::11", "default/web", tTCP, 80, true}, // api's IPv6 address
				{"10.0.0.11", "default/web", tTCP, 80, false},
				{"default/api", "default/web", tTCP, 80, false}, // by name: web's first family, IPv4
				{"default/api", "fd00::10", tTCP, 80, true},
				{"fd00::11", "fd00::10", tTCP, 80, true},
				{"10.0.0.11", "fd00::10", tTCP, 80, false}, // as given; no real packet mixes families
			},
		},
		// ---- both directions, isolation, endpoints ----
		{
			name: "egress of the source and ingress of the destination are both required",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "web-out", tWebSel, tTypes(tOut), tEgress(tPeers(tPodPeer(tSel("app", "db"))))),
				tPolicy("default", "db-in", tSel("app", "db"), tIngress(tPeers(tPodPeer(tAPISel)))),
			},
			checks: []tCheck{
				{"default/web", "default/db", tTCP, 5432, false}, // egress ok, ingress denies
				{"default/api", "default/db", tTCP, 5432, true},  // api's egress is open
				{"default/web", "default/api", tTCP, 8080, false},
			},
		},
		{
			name:     "a pod no policy selects is open",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel)},
			checks: []tCheck{
				{"default/api", "default/db", tTCP, 5432, true},
				{tOutside, "default/db", tUDP, 53, true},
				{"default/db", tOutside, tICMP, 0, true},
			},
		},
		{
			name:     "traffic from a node or outside is judged on the pod side only",
			policies: []*networkingv1.NetworkPolicy{tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("192.168.0.0/24"))))},
			checks: []tCheck{
				{"node/node1", "default/web", tTCP, 80, true},
				{"node/node2", "default/web", tTCP, 80, true},
				{"192.168.0.77", "default/web", tTCP, 80, true},
				{tOutside, "default/web", tTCP, 80, false},
				{"default/api", "node/node1", tTCP, 10250, true},
			},
		},
		{
			name: "hostNetwork pods are neither selected nor matched as pods",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "all", tSel(), tIngress(tPeers(tPodPeer(tSel("app", "client"))))),
			},
			checks: []tCheck{
				{"default/client", "default/web", tTCP, 80, true},
				{"default/hostpod", "default/web", tTCP, 80, false}, // labels match, but it is the node
				{"192.168.0.1", "default/web", tTCP, 80, false},
				{"default/api", "default/hostpod", tTCP, 80, true}, // not selected by podSelector {}
				{"default/hostpod", "default/api", tTCP, 80, false},
			},
		},
		{
			name: "multiple policies are additive",
			policies: []*networkingv1.NetworkPolicy{
				tPolicy("default", "a", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort("", 80))),
				tPolicy("default", "b", tWebSel, tIngress(tPeers(tPodPeer(tSel("app", "db"))))),
				tPolicy("default", "c", tSel("tier", "frontend"), tIngress(tPeers(tPodPeer(tAPISel)), tPort(corev1.ProtocolUDP, 53))),
			},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"default/api", "default/web", tUDP, 53, true},
				{"default/api", "default/web", tTCP, 81, false},
				{"default/db", "default/web", tTCP, 81, true},
				{"default/nolabel", "default/web", tTCP, 80, false},
			},
		},
		{
			name:     "a policy in another namespace does not select pods here",
			policies: []*networkingv1.NetworkPolicy{tPolicy("prod", "deny", tSel(), tTypes(tIn, tOut))},
			checks: []tCheck{
				{"default/api", "default/web", tTCP, 80, true},
				{"default/api", "prod/web", tTCP, 80, false},
				{"prod/client", "default/web", tTCP, 80, false},
				{"dev/client", "default/web", tTCP, 80, true},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := tBaseSnapshot()
			s.Policies = c.policies
			e := tBuild(t, s, c.opts...)
			tRunChecks(t, e, c.checks)

			// The same cluster built incrementally, policies first or
			// last, must agree.
			e2 := policylib.NewEngine(c.opts...)
			for _, np := range c.policies {
				if err := e2.SetPolicy(np); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range s.Pods {
				if err := e2.SetPod(p); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range s.Nodes {
				if err := e2.SetNode(n); err != nil {
					t.Fatal(err)
				}
			}
			for _, ns := range s.Namespaces {
				e2.SetNamespace(ns)
			}
			tRunChecks(t, e2, c.checks)
		})
	}
}

func TestDecisionVerdicts(t *testing.T) {
	s := tBaseSnapshot()
	s.Policies = []*networkingv1.NetworkPolicy{
		tPolicy("default", "web-in", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort("", 80))),
		tPolicy("default", "api-out", tAPISel, tTypes(tOut), tEgress(nil)),
	}
	e := tBuild(t, s)
	want := func(from, to string, proto policylib.Protocol, port int32, eg, in policylib.Outcome) {
		t.Helper()
		d := tDecide(t, e, from, to, proto, port)
		if d.Egress.Outcome != eg || d.Ingress.Outcome != in {
			t.Errorf("%s -> %s %s/%d: egress %v ingress %v, want %v %v", from, to, proto, port, d.Egress.Outcome, d.Ingress.Outcome, eg, in)
		}
		if wantAllowed := eg != policylib.Denied && in != policylib.Denied; d.Allowed != wantAllowed {
			t.Errorf("%s -> %s: Allowed=%v with egress %v ingress %v", from, to, d.Allowed, eg, in)
		}
		if d.Egress.Allowed() != (eg != policylib.Denied) || d.Ingress.Allowed() != (in != policylib.Denied) {
			t.Errorf("Verdict.Allowed disagrees with outcome")
		}
	}
	want("default/api", "default/web", tTCP, 80, policylib.AllowedByRule, policylib.AllowedByRule)
	want("default/api", "default/web", tTCP, 81, policylib.AllowedByRule, policylib.Denied)
	want("default/db", "default/web", tTCP, 80, policylib.NotIsolated, policylib.Denied)
	want("default/db", "default/api", tTCP, 80, policylib.NotIsolated, policylib.NotIsolated)
	want(tOutside, "default/db", tTCP, 80, policylib.NotApplicable, policylib.NotIsolated)
	want("node/node1", "default/web", tTCP, 80, policylib.NotApplicable, policylib.Denied)
	want("default/api", tOutside, tTCP, 443, policylib.AllowedByRule, policylib.NotApplicable)
	want("default/db", "default/hostpod", tTCP, 80, policylib.NotIsolated, policylib.NotApplicable)
	want("default/hostpod", "default/db", tTCP, 80, policylib.NotApplicable, policylib.NotIsolated)
	want(tOutside, "198.51.100.1", tTCP, 80, policylib.NotApplicable, policylib.NotApplicable)
}

func TestNamespaceLabels(t *testing.T) {
	byName := func(name string) tPolOpt {
		return tIngress(tPeers(tNSPeer(tSel(policylib.NamespaceNameLabel, name))))
	}
	e := tBuild(t, policylib.Snapshot{
		Namespaces: []*corev1.Namespace{
			// A declared label may not override the name label.
			tNS("a", tLabels(policylib.NamespaceNameLabel, "b", "team", "x")),
		},
		Pods: []*corev1.Pod{
			tPod("a", "p", nil, "10.1.0.1"),
			tPod("b", "p", nil, "10.1.0.2"), // b is implied
			tPod("srv", "s", nil, "10.1.0.3"),
		},
		Policies: []*networkingv1.NetworkPolicy{tPolicy("srv", "p", nil, byName("b"))},
	})
	tRunChecks(t, e, []tCheck{
		{"b/p", "srv/s", tTCP, 80, true},
		{"a/p", "srv/s", tTCP, 80, false},
	})
	// Relabelling a namespace moves its pods in and out of peers.
	if err := e.SetPolicy(tPolicy("srv", "p", nil, tIngress(tPeers(tNSPeer(tSel("team", "y")))))); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"a/p", "srv/s", tTCP, 80, false}, {"b/p", "srv/s", tTCP, 80, false}})
	e.SetNamespace(tNS("a", tLabels("team", "y")))
	e.SetNamespace(tNS("b", tLabels("team", "y")))
	tRunChecks(t, e, []tCheck{{"a/p", "srv/s", tTCP, 80, true}, {"b/p", "srv/s", tTCP, 80, true}})
	e.DeleteNamespace("a")
	tRunChecks(t, e, []tCheck{{"a/p", "srv/s", tTCP, 80, false}, {"b/p", "srv/s", tTCP, 80, true}})
	// The implied namespace keeps its name label.
	if err := e.SetPolicy(tPolicy("srv", "p", nil, byName("a"))); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"a/p", "srv/s", tTCP, 80, true}, {"b/p", "srv/s", tTCP, 80, false}})
}

func TestExplain(t *testing.T) {
	s := tBaseSnapshot()
	s.Policies = []*networkingv1.NetworkPolicy{
		tPolicy("default", "b-web", tWebSel,
			tIngress(tPeers(tPodPeer(tSel("app", "db"))), tPort("", 443)),
			tIngress(tPeers(tIPPeer("198.51.100.0/24"), tPodPeer(tAPISel)), tPort(corev1.ProtocolUDP, 53), tPort("", "http")),
			tIngress(tPeers(tPodPeer(tSel("app", "cache")))),
			tIngress(nil, tPort("", 9999)),
		),
		tPolicy("default", "a-frontend", tSel("tier", "frontend"), tNoIngressRules()),
		tPolicy("default", "z-all-out", tSel(), tTypes(tOut), tEgress(tPeers(tPodPeer(tWebSel)))),
		tPolicy("default", "unrelated", tSel("app", "nothing")),
	}
	e := tBuild(t, s)
	type want struct {
		allowed         bool
		ingress         policylib.RuleRef
		ingressPolicies []string
		egressPolicies  []string
	}
	ref := func(name string, dir policylib.Direction, rule, peer, port int) policylib.RuleRef {
		return policylib.RuleRef{Policy: types.NamespacedName{Namespace: "default", Name: name}, Direction: dir, Rule: rule, Peer: peer, Port: port}
	}
	cases := []struct {
		from, to string
		proto    policylib.Protocol
		port     int32
		want     want
	}{
		{"default/api", "default/web", tTCP, 80, want{true, ref("b-web", policylib.Ingress, 1, 1, 1),
			[]string{"default/a-frontend", "default/b-web"}, []string{"default/z-all-out"}}},
		{"default/api", "default/web", tUDP, 53, want{true, ref("b-web", policylib.Ingress, 1, 1, 0),
			[]string{"default/a-frontend", "default/b-web"}, []string{"default/z-all-out"}}},
		{"default/cache", "default/web", tTCP, 1, want{true, ref("b-web", policylib.Ingress, 2, 0, policylib.AnyPort),
			[]string{"default/a-frontend", "default/b-web"}, []string{"default/z-all-out"}}},
		{tOutside, "default/web", tTCP, 9999, want{true, ref("b-web", policylib.Ingress, 3, policylib.AnyPeer, 0),
			[]string{"default/a-frontend", "default/b-web"}, nil}},
		{"198.51.100.9", "default/web", tTCP, 80, want{true, ref("b-web", policylib.Ingress, 1, 0, 1),
			[]string{"default/a-frontend", "default/b-web"}, nil}},
		{"default/api", "default/web", tTCP, 81, want{false, policylib.RuleRef{},
			[]string{"default/a-frontend", "default/b-web"}, []string{"default/z-all-out"}}},
	}
	for _, c := range cases {
		f := tFlow(t, c.from, c.to, c.proto, c.port)
		x, err := e.Explain(f)
		if err != nil {
			t.Fatalf("Explain(%s): %v", f, err)
		}
		d, _ := e.Decide(f)
		if x.Decision != d {
			t.Errorf("%s: Explain decision %+v != Decide %+v", f, x.Decision, d)
		}
		if d.Allowed != c.want.allowed {
			t.Errorf("%s: allowed=%v, want %v\n%s", f, d.Allowed, c.want.allowed, x)
		}
		if c.want.allowed && x.Decision.Ingress.Rule != c.want.ingress {
			t.Errorf("%s: ingress rule %+v (%s), want %+v", f, x.Decision.Ingress.Rule, x.Decision.Ingress.Rule, c.want.ingress)
		}
		if c.want.allowed && !strings.HasPrefix(x.IngressRule, c.want.ingress.String()) {
			t.Errorf("%s: IngressRule %q does not start with %q", f, x.IngressRule, c.want.ingress.String())
		}
		if got := tKeys(x.IngressPolicies); !slices.Equal(got, c.want.ingressPolicies) {
			t.Errorf("%s: IngressPolicies %v, want %v", f, got, c.want.ingressPolicies)
		}
		if got := tKeys(x.EgressPolicies); !slices.Equal(got, c.want.egressPolicies) {
			t.Errorf("%s: EgressPolicies %v, want %v", f, got, c.want.egressPolicies)
		}
		verdict := "DENIED"
		if c.want.allowed {
			verdict = "ALLOWED"
		}
		if !strings.Contains(x.String(), verdict) {
			t.Errorf("%s: String() lacks %s:\n%s", f, verdict, x)
		}
	}

	// The egress rule reference of an allowed flow.
	x, err := e.Explain(tFlow(t, "default/db", "default/web", tTCP, 443))
	if err != nil {
		t.Fatal(err)
	}
	if want := ref("z-all-out", policylib.Egress, 0, 0, policylib.AnyPort); x.Decision.Egress.Rule != want {
		t.Errorf("egress rule %+v, want %+v", x.Decision.Egress.Rule, want)
	}
	if want := "default/z-all-out spec.egress[0].to[0]"; !strings.HasPrefix(x.EgressRule, want) {
		t.Errorf("EgressRule %q, want prefix %q", x.EgressRule, want)
	}
	if want := ref("b-web", policylib.Ingress, 0, 0, 0); x.Decision.Ingress.Rule != want {
		t.Errorf("ingress rule %+v, want %+v", x.Decision.Ingress.Rule, want)
	}
	if got := ref("b-web", policylib.Ingress, 1, 1, 0).String(); got != "default/b-web spec.ingress[1].from[1].ports[0]" {
		t.Errorf("RuleRef.String() = %q", got)
	}
	if got := ref("b-web", policylib.Ingress, 3, policylib.AnyPeer, policylib.AnyPort).String(); got != "default/b-web spec.ingress[3]" {
		t.Errorf("RuleRef.String() = %q", got)
	}

	// Endpoint info: an address that is a pod is reported as the pod.
	x, err = e.Explain(tFlow(t, "10.0.0.11", "192.168.0.2", tTCP, 80))
	if err != nil {
		t.Fatal(err)
	}
	if x.From.Kind != policylib.EndpointPod || x.From.Endpoint.Name != "api" || x.To.Kind != policylib.EndpointNode || x.To.Node != "node2" {
		t.Errorf("endpoint info: from %+v to %+v", x.From, x.To)
	}

	// A denied ICMP flow carries the ICMP note.
	x, err = e.Explain(tFlow(t, "default/api", "default/web", tICMP, 0))
	if err != nil {
		t.Fatal(err)
	}
	if x.Decision.Allowed || len(x.Notes) == 0 || !strings.Contains(x.Notes[0], "ICMP") {
		t.Errorf("ICMP explanation: %+v", x)
	}
}

func tKeys(ks []types.NamespacedName) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.String())
	}
	return out
}

func TestDecideErrors(t *testing.T) {
	e := tBuild(t, tBaseSnapshot())
	web := policylib.PodEndpoint("default", "web")
	cases := []struct {
		name    string
		f       policylib.Flow
		unknown bool // errors.Is ErrUnknownEndpoint
	}{
		{"unknown source pod", policylib.Flow{From: policylib.PodEndpoint("default", "ghost"), To: web, Port: 80}, true},
		{"unknown destination pod", policylib.Flow{From: web, To: policylib.PodEndpoint("nope", "web"), Port: 80}, true},
		{"unknown node", policylib.Flow{From: policylib.NodeEndpoint("node9"), To: web, Port: 80}, true},
		{"zero endpoint", policylib.Flow{To: web, Port: 80}, true},
		{"invalid address", policylib.Flow{From: policylib.AddrEndpoint(netip.Addr{}), To: web, Port: 80}, true},
		{"port 0", policylib.Flow{From: web, To: web, Port: 0}, false},
		{"port -1", policylib.Flow{From: web, To: web, Protocol: tUDP, Port: -1}, false},
		{"port 65536", policylib.Flow{From: web, To: web, Protocol: tSCTP, Port: 65536}, false},
	}
	for _, c := range cases {
		if _, err := e.Decide(c.f); err == nil {
			t.Errorf("%s: Decide succeeded", c.name)
		} else if errors.Is(err, policylib.ErrUnknownEndpoint) != c.unknown {
			t.Errorf("%s: errors.Is(%v, ErrUnknownEndpoint) = %v", c.name, err, !c.unknown)
		}
		if _, err := e.Explain(c.f); err == nil {
			t.Errorf("%s: Explain succeeded", c.name)
		}
	}
	// Boundaries that are fine; ICMP ignores the port.
	for _, f := range []policylib.Flow{
		{From: web, To: web, Port: 1},
		{From: web, To: web, Port: 65535},
		{From: web, To: web, Protocol: tICMP, Port: 0},
		{From: web, To: web, Protocol: tICMP, Port: -5},
	} {
		if _, err := e.Decide(f); err != nil {
			t.Errorf("Decide(%s): %v", f, err)
		}
	}
}

func TestServices(t *testing.T) {
	s := tBaseSnapshot()
	s.Services = []*corev1.Service{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "backend"},
			Spec: corev1.ServiceSpec{
				Selector: tLabels("role", "backend"),
				Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
					{Name: "num", Port: 8443, TargetPort: intstr.FromInt32(443)},
					{Name: "same", Port: 7000},
					{Name: "dns", Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP},
				},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-cluster"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeNodePort, Selector: tLabels("app", "web"),
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http"), NodePort: 31000}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-local"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeNodePort, Selector: tLabels("app", "web"),
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				Ports:                 []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80), NodePort: 31001}},
			},
		},
	}
	s.Policies = []*networkingv1.NetworkPolicy{
		tPolicy("default", "web-in", tWebSel, tIngress(tPeers(tIPPeer("203.0.113.0/24")), tPort("", 80))),
	}
	e := tBuild(t, s)
	client := policylib.PodEndpoint("prod", "client")

	type dst struct {
		pod  string
		port int32
	}
	flowsTo := func(fs []policylib.ServiceFlow) []dst {
		var out []dst
		for _, f := range fs {
			out = append(out, dst{f.Flow.To.String(), f.Flow.Port})
		}
		return out
	}
	for _, c := range []struct {
		port  int32
		proto policylib.Protocol
		want  []dst
	}{
		{80, tTCP, []dst{{"default/api", 8080}, {"default/web", 80}}}, // named target port per pod
		{8443, tTCP, []dst{{"default/api", 443}, {"default/web", 443}}},
		{7000, tTCP, []dst{{"default/api", 7000}, {"default/web", 7000}}}, // targetPort defaults to port
		{53, tUDP, []dst{{"default/web", 53}}},                            // api lacks "dns"
	} {
		fs, err := e.ResolveService(client, "default", "backend", c.port, c.proto)
		if err != nil {
			t.Fatalf("ResolveService %d: %v", c.port, err)
		}
		if got := flowsTo(fs); !slices.Equal(got, c.want) {
			t.Errorf("ResolveService %s/%d: %v, want %v", c.proto, c.port, got, c.want)
		}
		for _, f := range fs {
			if f.Flow.From != client || f.Flow.Protocol != c.proto || f.Service.Name != "backend" || f.Note == "" {
				t.Errorf("ResolveService flow %+v", f)
			}
		}
	}
	for _, bad := range []struct {
		name  string
		port  int32
		proto policylib.Protocol
	}{{"backend", 81, tTCP}, {"backend", 80, tUDP}, {"ghost", 80, tTCP}} {
		if _, err := e.ResolveService(client, "default", bad.name, bad.port, bad.proto); !errors.Is(err, policylib.ErrUnknownEndpoint) {
			t.Errorf("ResolveService %s %s/%d: err %v, want ErrUnknownEndpoint", bad.name, bad.proto, bad.port, err)
		}
	}

	outside := tEP(t, tOutside)
	// Cluster: the node source-NATs, so the pod sees node1 and the ipBlock
	// for the client no longer matches.
	fs, err := e.ResolveNodePort(outside, "node1", 31000, tTCP)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Flow.From != policylib.NodeEndpoint("node1") || fs[0].Flow.To.String() != "default/web" || fs[0].Flow.Port != 80 {
		t.Fatalf("ResolveNodePort Cluster: %+v", fs)
	}
	if d, err := e.Decide(fs[0].Flow); err != nil || d.Allowed {
		t.Errorf("NodePort Cluster flow: %+v %v, want denied", d, err)
	}
	// Local: the client address is kept.
	fs, err = e.ResolveNodePort(outside, "node2", 31001, tTCP)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Flow.From != outside || fs[0].Flow.To.String() != "default/web" || fs[0].Flow.Port != 80 {
		t.Fatalf("ResolveNodePort Local: %+v", fs)
	}
	if d, err := e.Decide(fs[0].Flow); err != nil || !d.Allowed {
		t.Errorf("NodePort Local flow: %+v %v, want allowed", d, err)
	}
	for _, bad := range []struct {
		node  string
		port  int32
		proto policylib.Protocol
	}{{"node9", 31000, tTCP}, {"node1", 31002, tTCP}, {"node1", 31000, tUDP}} {
		if _, err := e.ResolveNodePort(outside, bad.node, bad.port, bad.proto); !errors.Is(err, policylib.ErrUnknownEndpoint) {
			t.Errorf("ResolveNodePort %s %s/%d: err %v, want ErrUnknownEndpoint", bad.node, bad.proto, bad.port, err)
		}
	}
}

// TestIncrementalMatchesRebuild applies random changes to one engine and
// checks after each that it decides every flow as an engine built from
// scratch from the same objects does.
func TestIncrementalMatchesRebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	namespaces := []string{"a", "b", "c"}
	podNames := []string{"p0", "p1", "p2"}
	keys := []string{"app", "env"}
	vals := []string{"x", "y"}
	randLabels := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if rng.IntN(3) > 0 {
				m[k] = vals[rng.IntN(len(vals))]
			}
		}
		return m
	}
	randSel := func() *metav1.LabelSelector {
		s := &metav1.LabelSelector{}
		for _, k := range keys {
			switch rng.IntN(5) {
			case 0:
				s.MatchExpressions = append(s.MatchExpressions, tExpr(k, metav1.LabelSelectorOpNotIn, vals[rng.IntN(2)]))
			case 1:
				s.MatchExpressions = append(s.MatchExpressions, tExpr(k, metav1.LabelSelectorOpDoesNotExist))
			case 2:
				if s.MatchLabels == nil {
					s.MatchLabels = map[string]string{}
				}
				s.MatchLabels[k] = vals[rng.IntN(2)]
			}
		}
		return s
	}
	randPeers := func() []networkingv1.NetworkPolicyPeer {
		var out []networkingv1.NetworkPolicyPeer
		for range rng.IntN(3) {
			switch rng.IntN(4) {
			case 0:
				out = append(out, tPodPeer(randSel()))
			case 1:
				out = append(out, tNSPeer(randSel()))
			case 2:
				out = append(out, tNSPodPeer(randSel(), randSel()))
			case 3:
				out = append(out, tIPPeer("10.9.0.0/16", "10.9.1.0/24"))
			}
		}
		return out
	}
	randPolicy := func(ns, name string) *networkingv1.NetworkPolicy {
		var opts []tPolOpt
		for range rng.IntN(3) {
			opts = append(opts, tIngress(randPeers()))
		}
		for range rng.IntN(3) {
			opts = append(opts, tEgress(randPeers()))
		}
		switch rng.IntN(3) {
		case 0:
			opts = append(opts, tTypes(tOut))
		case 1:
			opts = append(opts, tTypes(tIn, tOut))
		}
		return tPolicy(ns, name, randSel(), opts...)
	}

	e := policylib.NewEngine()
	state := map[string]any{} // kind/ns/name -> object
	ipOf := map[string]string{}
	nextIP := 1
	for step := range 400 {
		ns := namespaces[rng.IntN(len(namespaces))]
		switch rng.IntN(8) {
		case 0, 1, 2:
			name := podNames[rng.IntN(len(podNames))]
			key := ns + "/" + name
			if _, ok := ipOf[key]; !ok || rng.IntN(4) == 0 {
				ipOf[key] = fmt.Sprintf("10.9.%d.%d", nextIP/200, nextIP%200+1)
				nextIP++
			}
			p := tPod(ns, name, randLabels(), ipOf[key])
			if rng.IntN(6) == 0 {
				p.Spec.HostNetwork = true
			}
			if err := e.SetPod(p); err != nil {
				t.Fatal(err)
			}
			state["pod/"+key] = p
		case 3:
			name := podNames[rng.IntN(len(podNames))]
			e.DeletePod(ns, name)
			delete(state, "pod/"+ns+"/"+name)
		case 4:
			n := tNS(ns, randLabels())
			e.SetNamespace(n)
			state["ns/"+ns] = n
		case 5:
			e.DeleteNamespace(ns)
			delete(state, "ns/"+ns)
		case 6:
			name := fmt.Sprintf("np%d", rng.IntN(3))
			np := randPolicy(ns, name)
			if err := e.SetPolicy(np); err != nil {
				t.Fatal(err)
			}
			state["np/"+ns+"/"+name] = np
		case 7:
			name := fmt.Sprintf("np%d", rng.IntN(3))
			e.DeletePolicy(ns, name)
			delete(state, "np/"+ns+"/"+name)
		}

		var snap policylib.Snapshot
		var eps []policylib.Endpoint
		for _, k := range slices.Sorted(maps.Keys(state)) {
			switch o := state[k].(type) {
			case *corev1.Pod:
				snap.Pods = append(snap.Pods, o)
				eps = append(eps, policylib.PodEndpoint(o.Namespace, o.Name))
			case *corev1.Namespace:
				snap.Namespaces = append(snap.Namespaces, o)
			case *networkingv1.NetworkPolicy:
				snap.Policies = append(snap.Policies, o)
			}
		}
		eps = append(eps, policylib.AddrEndpoint(netip.MustParseAddr("10.9.1.7")), policylib.AddrEndpoint(netip.MustParseAddr("10.9.2.7")))
		fresh := tBuild(t, snap)
		for _, from := range eps {
			for _, to := range eps {
				f := policylib.Flow{From: from, To: to, Protocol: tTCP, Port: 80}
				got, err1 := e.Decide(f)
				want, err2 := fresh.Decide(f)
				if (err1 == nil) != (err2 == nil) || got != want {
					t.Fatalf("step %d: %s: incremental %+v (%v), rebuilt %+v (%v)", step, f, got, err1, want, err2)
				}
			}
		}
	}
}

// TestDecideAllocs guards the hot path: Decide must not allocate.
func TestDecideAllocs(t *testing.T) {
	s := tBaseSnapshot()
	s.Policies = []*networkingv1.NetworkPolicy{
		tPolicy("default", "web-in", tWebSel,
			tIngress(tPeers(tPodPeer(tAPISel)), tPort("", "http")),
			tIngress(tPeers(tIPPeer("203.0.113.0/24", "203.0.113.128/25")), tPort("", 80)),
			tIngress(tPeers(tPodPeer(tSel("app", "db"))))),
		tPolicy("default", "api-out", tAPISel, tTypes(tOut), tEgress(tPeers(tNSPeer(tSel()))), tEgress(tPeers(tIPPeer("0.0.0.0/0")), tPort("", 443))),
	}
	e := tBuild(t, s)
	cases := []struct {
		name string
		f    policylib.Flow
		want bool
	}{
		{"allowed", tFlow(t, "default/db", "default/web", tTCP, 5432), true},
		{"denied", tFlow(t, "default/cache", "default/web", tTCP, 80), false},
		{"named port", tFlow(t, "default/api", "default/web", tTCP, 80), true},
		{"ipBlock", tFlow(t, tOutside, "default/web", tTCP, 80), true},
		{"ipBlock except", tFlow(t, "203.0.113.200", "default/web", tTCP, 80), false},
		{"egress ipBlock", tFlow(t, "default/api", "198.51.100.1", tTCP, 443), true},
		{"ICMP allowed", tFlow(t, "default/db", "default/web", tICMP, 0), true},
		{"ICMP denied", tFlow(t, "default/api", "default/web", tICMP, 0), false},
		{"not isolated", tFlow(t, "node/node1", "default/db", tUDP, 53), true},
	}
	for _, c := range cases {
		d, err := e.Decide(c.f)
		if err != nil || d.Allowed != c.want {
			t.Fatalf("%s: %+v %v, want allowed=%v", c.name, d, err, c.want)
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := e.Decide(c.f); err != nil {
				panic(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: Decide allocates %v times per call", c.name, allocs)
		}
	}
}

// TestLifecycle: pods, policies and nodes coming and going.
func TestLifecycle(t *testing.T) {
	s := tBaseSnapshot()
	s.Policies = []*networkingv1.NetworkPolicy{
		tPolicy("default", "web-in", tWebSel, tIngress(tPeers(tPodPeer(tSel("role", "frontend"))))),
	}
	e := tBuild(t, s)
	tRunChecks(t, e, []tCheck{{"default/api", "default/web", tTCP, 80, false}})

	// Relabelling a pod moves it into a peer ...
	api := tPodIPs("default", "api", tLabels("app", "api", "role", "frontend"), []string{"10.0.0.11", "fd00::11"})
	if err := e.SetPod(api); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"default/api", "default/web", tTCP, 80, true}})
	// ... and relabelling the destination out of the policy opens it.
	web := tPodIPs("default", "web", tLabels("app", "web2"), []string{"10.0.0.10", "fd00::10"})
	if err := e.SetPod(web); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"default/db", "default/web", tTCP, 80, true}})
	web.Labels = tLabels("app", "web")
	if err := e.SetPod(web); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"default/db", "default/web", tTCP, 80, false}, {"default/api", "default/web", tTCP, 80, true}})

	// A new address: the old one is no longer the pod.
	api.Status.PodIP, api.Status.PodIPs = "10.0.0.99", []corev1.PodIP{{IP: "10.0.0.99"}}
	if err := e.SetPod(api); err != nil {
		t.Fatal(err)
	}
	x, err := e.Explain(tFlow(t, "10.0.0.11", "default/web", tTCP, 80))
	if err != nil {
		t.Fatal(err)
	}
	if x.From.Kind != policylib.EndpointAddr || x.Decision.Allowed {
		t.Errorf("old address still resolves to the pod: %+v", x)
	}
	tRunChecks(t, e, []tCheck{{"10.0.0.99", "default/web", tTCP, 80, true}})

	// An IPv4-mapped pod address is the IPv4 address.
	if err := e.SetPod(tPod("default", "mapped", tLabels("role", "frontend"), "::ffff:10.0.0.77")); err != nil {
		t.Fatal(err)
	}
	tRunChecks(t, e, []tCheck{{"10.0.0.77", "default/web", tTCP, 80, true}, {"::ffff:10.0.0.77", "default/web", tTCP, 80, true}})

	// A finished pod is gone.
	done := tPod("default", "api", nil, "10.0.0.99")
	done.Status.Phase = corev1.PodSucceeded
	if err := e.SetPod(done); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(tFlow(t, "default/api", "default/web", tTCP, 80)); !errors.Is(err, policylib.ErrUnknownEndpoint) {
		t.Errorf("finished pod: err %v, want ErrUnknownEndpoint", err)
	}
	tRunChecks(t, e, []tCheck{{"10.0.0.99", "default/web", tTCP, 80, false}})

	// Deleting the policy opens the pod; deleting twice is harmless.
	e.DeletePolicy("default", "web-in")
	e.DeletePolicy("default", "web-in")
	tRunChecks(t, e, []tCheck{{"default/db", "default/web", tTCP, 80, true}})

	// Bad addresses are errors naming the object.
	if err := e.SetPod(tPod("default", "bad", nil, "10.0.0.300")); err == nil || !strings.Contains(err.Error(), "default/bad") {
		t.Errorf("SetPod with a bad address: %v", err)
	}
	if err := e.SetNode(tNode("node3", "nope")); err == nil || !strings.Contains(err.Error(), "node3") {
		t.Errorf("SetNode with a bad address: %v", err)
	}
	s.Pods = append(s.Pods, tPod("default", "bad", nil, "x"))
	if _, err := policylib.Build(s); err == nil {
		t.Error("Build accepted a pod with a bad address")
	}

	// A deleted node is unknown; its address is a plain address.
	e.DeleteNode("node2")
	if _, err := e.Decide(tFlow(t, "node/node2", "default/web", tTCP, 80)); !errors.Is(err, policylib.ErrUnknownEndpoint) {
		t.Errorf("deleted node: err %v", err)
	}
	if x, err := e.Explain(tFlow(t, "192.168.0.2", "default/web", tTCP, 80)); err != nil || x.From.Kind != policylib.EndpointAddr {
		t.Errorf("deleted node's address: %+v %v", x.From, err)
	}
}

// TestServiceBackendsTakingTraffic: a Service resolves to the pods
// kube-proxy sends traffic to: not one without an address, nor a not-ready
// one (unless the Service publishes not-ready addresses), and a
// terminating one only when no other is ready. Readiness follows status
// updates.
func TestServiceBackendsTakingTraffic(t *testing.T) {
	pod := func(name, ip string, ready corev1.ConditionStatus, terminating bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: tLabels("app", "b")}}
		p.Status.PodIP = ip
		if ready != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
		}
		if terminating {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	svc := func(publish bool) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b"},
			Spec: corev1.ServiceSpec{Selector: tLabels("app", "b"), Ports: []corev1.ServicePort{{Port: 80}}, PublishNotReadyAddresses: publish}}
	}
	s := policylib.Snapshot{
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "default"}}},
		Pods: []*corev1.Pod{
			pod("no-conditions", "10.0.0.1", "", false), // a manifest: ready
			pod("ready", "10.0.0.2", corev1.ConditionTrue, false),
			pod("not-ready", "10.0.0.3", corev1.ConditionFalse, false),
			pod("no-address", "", corev1.ConditionTrue, false),
			pod("terminating", "10.0.0.5", corev1.ConditionTrue, true),
		},
		Services: []*corev1.Service{svc(false)},
	}
	e := tBuild(t, s)
	backends := func() []string {
		t.Helper()
		fs, err := e.ResolveService(policylib.AddrEndpoint(netip.MustParseAddr("192.0.2.1")), "default", "b", 80, tTCP)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range fs {
			out = append(out, f.Flow.To.Name)
		}
		return out
	}
	if got := backends(); !slices.Equal(got, []string{"no-conditions", "ready"}) {
		t.Errorf("backends %v", got)
	}
	if err := e.SetService(svc(true)); err != nil {
		t.Fatal(err)
	}
	if got := backends(); !slices.Equal(got, []string{"no-conditions", "not-ready", "ready", "terminating"}) {
		t.Errorf("publishNotReadyAddresses: backends %v", got)
	}
	if err := e.SetService(svc(false)); err != nil {
		t.Fatal(err)
	}
	// Only the terminating pod is left ready: it takes the traffic.
	for _, p := range []*corev1.Pod{pod("no-conditions", "10.0.0.1", corev1.ConditionFalse, false), pod("ready", "10.0.0.2", corev1.ConditionFalse, false)} {
		if err := e.SetPod(p); err != nil {
			t.Fatal(err)
		}
	}
	if got := backends(); !slices.Equal(got, []string{"terminating"}) {
		t.Errorf("after readiness went: backends %v", got)
	}
}

// TestExplainNotesPodEnds: a pod end without an address, or on the host's
// network, is said so in the explanation's notes.
func TestExplainNotesPodEnds(t *testing.T) {
	s := tBaseSnapshot()
	hn := tPod("default", "hn", tLabels("app", "cli"), "10.0.0.1")
	hn.Spec.HostNetwork = true
	s.Pods = append(s.Pods, hn, tPod("default", "pending", tLabels("app", "cli"), ""))
	e := tBuild(t, s)
	for from, want := range map[string]string{
		"default/hn":      "default/hn uses the host's network",
		"default/pending": "default/pending has no address yet",
	} {
		x, err := e.Explain(tFlow(t, from, "default/web", tTCP, 80))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(x.Notes, func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Errorf("%s: notes %q lack %q", from, x.Notes, want)
		}
	}
}
