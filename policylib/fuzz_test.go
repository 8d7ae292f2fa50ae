package policylib_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podwall/podwall/policylib"
)

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{
		"default/web", "node/k8s-node1", "10.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0",
		"node/", "node/a/b", "/x", "x/", "a/b/c", "", "node", "1.2.3.4/x", "2001:db8::/32", "01.2.3.4",
		"pod/node/web", "pod/pod/x", "pod/default/web", "pod/a", "pod//x", "pod/node/", "svc/x", "pod/svc/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := policylib.ParseEndpoint(s)
		if err != nil {
			if ep != (policylib.Endpoint{}) {
				t.Fatalf("ParseEndpoint(%q) failed but returned %+v", s, ep)
			}
			return
		}
		switch ep.Kind {
		case policylib.EndpointPod:
			if ep.Namespace == "" || ep.Name == "" || strings.Contains(ep.Name, "/") || strings.Contains(ep.Namespace, "/") {
				t.Fatalf("ParseEndpoint(%q) = bad pod %+v", s, ep)
			}
		case policylib.EndpointNode:
			if ep.Name == "" || strings.Contains(ep.Name, "/") {
				t.Fatalf("ParseEndpoint(%q) = bad node %+v", s, ep)
			}
		case policylib.EndpointAddr:
			if !ep.Addr.IsValid() || ep.Addr.Is4In6() {
				t.Fatalf("ParseEndpoint(%q) = bad address %+v", s, ep)
			}
		default:
			t.Fatalf("ParseEndpoint(%q) = %+v with no kind", s, ep)
		}
		str := ep.String()
		ep2, err := policylib.ParseEndpoint(str)
		if err != nil {
			t.Fatalf("ParseEndpoint(%q) = %+v, but its String %q does not parse: %v", s, ep, str, err)
		}
		if ep2 != ep {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v", s, ep, str, ep2)
		}
		// Names are written one way, but for pods that "pod/" spells out
		// (needed only for namespaces named node, pod or svc).
		if ep.Kind != policylib.EndpointAddr && str != s && !strings.HasPrefix(s, "pod/") && !strings.HasPrefix(str, "pod/") {
			t.Fatalf("ParseEndpoint(%q).String() = %q", s, str)
		}
	})
}

func FuzzParseProtocol(f *testing.F) {
	for _, s := range []string{"TCP", "tcp", "Udp", "SCTP", "icmp", "ICMPv6", "", "ICMP6", "tcp ", "HTTP"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := policylib.ParseProtocol(s)
		panicked := func() (r bool) {
			defer func() { r = recover() != nil }()
			policylib.MustParseProtocol(s)
			return false
		}()
		if panicked != (err != nil) {
			t.Fatalf("MustParseProtocol(%q) panicked=%v, ParseProtocol err=%v", s, panicked, err)
		}
		if err != nil {
			return
		}
		if p > policylib.ICMP {
			t.Fatalf("ParseProtocol(%q) = %v", s, p)
		}
		name := p.String()
		if !strings.EqualFold(s, name) && !(p == policylib.ICMP && strings.EqualFold(s, "ICMPv6")) {
			t.Fatalf("ParseProtocol(%q) = %s", s, name)
		}
		if p2, err := policylib.ParseProtocol(name); err != nil || p2 != p {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, p, name, p2, err)
		}
		if p.HasPorts() != (p != policylib.ICMP) {
			t.Fatalf("%v.HasPorts() = %v", p, p.HasPorts())
		}
	})
}

// tFuzzEndpoints are the flow ends FuzzValidatePolicy decides between.
var tFuzzEndpoints = []string{
	"default/web", "default/api", "default/hostpod", "prod/client", "implied/x",
	"node/node2", tOutside, "10.0.0.200", "2001:db8::1",
}

var tFuzzPorts = []struct {
	proto policylib.Protocol
	port  int32
}{{tTCP, 80}, {tTCP, 8080}, {tUDP, 53}, {tSCTP, 7777}, {tICMP, 0}}

func FuzzValidatePolicy(f *testing.F) {
	seeds := []*networkingv1.NetworkPolicy{
		tPolicy("default", "p", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort("", 80))),
		tPolicy("default", "p", tSel(), tTypes(tIn, tOut), tEgress(tPeers(tNSPodPeer(tSel("env", "prod"), tSel())), tPort(corev1.ProtocolUDP, 53))),
		tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24")))),
		tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("2001:db8::/32", "2001:db8::/48"))), tIngress(nil, tPort("", "http"))),
		tPolicy("prod", "p", tSelExpr(tExpr("app", "NotIn", "x")), tTypes(tOut), tEgress(nil, tPortRange("", 8000, 8080))),
		// invalid ones
		tPolicy("default", "p", tWebSel, tIngress(tPeers(tIPPeer("10.0.0.1/8", "11.0.0.0/8")))),
		tPolicy("default", "p", tWebSel, tIngress(nil, tPortRange("", 90, 80), tPort("", "BAD"))),
		tPolicy("default", "p", tWebSel, tTypes(tIn, tIn, "X")),
	}
	for _, np := range seeds {
		b, err := json.Marshal(np)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"metadata":{"name":"p","namespace":"default"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["0.0.0.0/1"]}}],"ports":[{"port":"dns","protocol":"UDP"},{"port":65535,"endPort":65535}]}],"egress":[],"policyTypes":["Egress","Ingress"]}}`))
	f.Add([]byte(`{"metadata":{"name":"p","namespace":"default"},"spec":{"podSelector":{"matchExpressions":[{"key":"app","operator":"In"}]},"ingress":[{"from":[{}]}]}}`))
	f.Add([]byte(`{}`))

	base := tBaseSnapshot()
	f.Fuzz(func(t *testing.T, data []byte) {
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(data, &np); err != nil {
			return
		}
		before := np.DeepCopy()
		errs := policylib.ValidatePolicy(&np)
		_ = policylib.DescribePolicy(&np)
		if !reflect.DeepEqual(before, &np) {
			t.Fatal("ValidatePolicy or DescribePolicy modified its input")
		}
		e := tBuild(t, base)
		err := e.SetPolicy(&np)
		if len(errs) > 0 {
			var pe *policylib.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("ValidatePolicy found %v but SetPolicy returned %v", errs, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ValidatePolicy found nothing but SetPolicy failed: %v", err)
		}
		if errs := policylib.ValidatePolicy(policylib.DefaultPolicy(&np)); len(errs) > 0 {
			t.Fatalf("defaulting made a valid policy invalid: %v", errs)
		}
		// Decide and Explain neither panic nor fail on known endpoints, and
		// a rebuilt engine agrees with the incremental one.
		s := base
		s.Policies = []*networkingv1.NetworkPolicy{&np}
		fresh := tBuild(t, s)
		for _, from := range tFuzzEndpoints {
			for _, to := range tFuzzEndpoints {
				for _, pp := range tFuzzPorts {
					f := tFlow(t, from, to, pp.proto, pp.port)
					d, err := e.Decide(f)
					if err != nil {
						t.Fatalf("Decide(%s): %v", f, err)
					}
					if d2, _ := fresh.Decide(f); d2 != d {
						t.Fatalf("Decide(%s): incremental %+v, rebuilt %+v", f, d, d2)
					}
					x, err := e.Explain(f)
					if err != nil || x.Decision != d {
						t.Fatalf("Explain(%s): %+v, %v; Decide %+v", f, x.Decision, err, d)
					}
					_ = x.String()
				}
			}
		}
		tCheckIPBlocks(t, &np)
	})
}

// tCheckIPBlocks checks every ipBlock of a valid policy against netip: a
// policy on default/web admitting exactly that block must admit an address
// exactly when the cidr contains it and no except does. Addresses tried
// are each prefix's first and last address and their neighbours.
func tCheckIPBlocks(t *testing.T, np *networkingv1.NetworkPolicy) {
	var blocks []*networkingv1.IPBlock
	for _, r := range np.Spec.Ingress {
		for _, p := range r.From {
			if p.IPBlock != nil {
				blocks = append(blocks, p.IPBlock)
			}
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			if p.IPBlock != nil {
				blocks = append(blocks, p.IPBlock)
			}
		}
	}
	if len(blocks) > 4 {
		blocks = blocks[:4]
	}
	for _, b := range blocks {
		cidr := netip.MustParsePrefix(b.CIDR)
		prefixes := []netip.Prefix{cidr}
		var except []netip.Prefix
		for _, ex := range b.Except {
			p := netip.MustParsePrefix(ex)
			except = append(except, p)
			prefixes = append(prefixes, p)
		}
		var addrs []netip.Addr
		for _, p := range prefixes {
			first, last := p.Masked().Addr(), tLastAddr(p)
			addrs = append(addrs, first, first.Prev(), last, last.Next())
		}
		s := tBaseSnapshot()
		s.Policies = []*networkingv1.NetworkPolicy{tPolicy("default", "ipblock", tWebSel,
			tIngress(tPeers(networkingv1.NetworkPolicyPeer{IPBlock: b})))}
		e := tBuild(t, s)
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			want := cidr.Contains(a)
			for _, ex := range except {
				if ex.Contains(a) {
					want = false
				}
			}
			f := policylib.Flow{From: policylib.AddrEndpoint(a), To: policylib.PodEndpoint("default", "web"), Port: 80}
			d, err := e.Decide(f)
			if err != nil {
				t.Fatalf("Decide(%s): %v", f, err)
			}
			if d.Allowed != want {
				t.Fatalf("ipBlock %s except %v, address %s: allowed %v, want %v", b.CIDR, b.Except, a, d.Allowed, want)
			}
		}
	}
}

func tLastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
