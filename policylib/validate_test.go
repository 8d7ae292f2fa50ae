package policylib_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podwall/podwall/policylib"
)

// tFE is an expected field error: its type and exact path.
type tFE struct {
	typ  field.ErrorType
	path string
}

func (e tFE) String() string { return string(e.typ) + " " + e.path }

func tFieldErrors(errs field.ErrorList) []tFE {
	out := make([]tFE, len(errs))
	for i, fe := range errs {
		out[i] = tFE{fe.Type, fe.Field}
	}
	// A value can fail several checks at one path (a port name that is
	// both too long and upper case): compare the distinct type+path pairs.
	slices.SortFunc(out, func(a, b tFE) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

const (
	tInvalid   = field.ErrorTypeInvalid
	tRequired  = field.ErrorTypeRequired
	tForbidden = field.ErrorTypeForbidden
	tNotSupp   = field.ErrorTypeNotSupported
	tDup       = field.ErrorTypeDuplicate
)

func TestValidatePolicy(t *testing.T) {
	icmp := corev1.Protocol("ICMP")
	lower := corev1.Protocol("tcp")
	ing := func(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
		return tPolicy("default", "p", tWebSel, tIngress(peers, ports...))
	}
	eg := func(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) *networkingv1.NetworkPolicy {
		return tPolicy("default", "p", tWebSel, tEgress(peers, ports...))
	}
	withPort := func(pp networkingv1.NetworkPolicyPort, edit func(*networkingv1.NetworkPolicyPort)) networkingv1.NetworkPolicyPort {
		edit(&pp)
		return pp
	}
	end := func(n int32) func(*networkingv1.NetworkPolicyPort) {
		return func(pp *networkingv1.NetworkPolicyPort) { pp.EndPort = &n }
	}
	proto := func(p *corev1.Protocol) func(*networkingv1.NetworkPolicyPort) {
		return func(pp *networkingv1.NetworkPolicyPort) { pp.Protocol = p }
	}
	ipb := func(cidr string, except ...string) []networkingv1.NetworkPolicyPeer {
		return tPeers(tIPPeer(cidr, except...))
	}
	const from0 = "spec.ingress[0].from[0]"
	const port0 = "spec.ingress[0].ports[0]"

	cases := []struct {
		name string
		np   *networkingv1.NetworkPolicy
		want []tFE
	}{
		// valid policies
		{"valid: everything", tPolicy("default", "p", tWebSel,
			tIngress(tPeers(tPodPeer(tAPISel), tNSPodPeer(tSel(), tSel("a", "b")), tIPPeer("10.0.0.0/8", "10.1.0.0/16", "10.255.255.255/32")),
				tPort("", 80), tPortRange(corev1.ProtocolUDP, 1, 65535), tPort(corev1.ProtocolSCTP, "sctp-1"), tPort(corev1.ProtocolTCP, nil)),
			tEgress(tPeers(tIPPeer("2001:db8::/32", "2001:db8::/33"), tIPPeer("0.0.0.0/0"), tIPPeer("::/0")), tPortRange("", 1000, 1000)),
			tTypes(tIn, tOut)), nil},
		{"valid: empty", tPolicy("default", "p", nil), nil},
		{"valid: ingress [{}] and egress [{}]", tPolicy("default", "p", nil, tIngress(nil), tEgress(nil), tTypes(tOut)), nil},
		{"valid: host bits in neither", ing(ipb("192.168.2.0/24")), nil},
		{"valid: non-canonical IPv6 form", ing(ipb("2001:DB8:0:0::/64", "2001:db8::/65")), nil},

		// ports
		{"protocol ICMP", ing(nil, withPort(tPort("", 80), proto(&icmp))), []tFE{{tNotSupp, port0 + ".protocol"}}},
		{"protocol lower case", eg(nil, withPort(tPort("", 80), proto(&lower))), []tFE{{tNotSupp, "spec.egress[0].ports[0].protocol"}}},
		{"protocol empty string", ing(nil, withPort(tPort("", nil), proto(new(corev1.Protocol)))), []tFE{{tNotSupp, port0 + ".protocol"}}},
		{"port 0", ing(nil, tPort("", 0)), []tFE{{tInvalid, port0 + ".port"}}},
		{"port 65536", ing(nil, tPort("", 65536)), []tFE{{tInvalid, port0 + ".port"}}},
		{"port -1", ing(nil, tPort("", 80), tPort("", -1)), []tFE{{tInvalid, "spec.ingress[0].ports[1].port"}}},
		{"endPort < port", eg(nil, tPortRange("", 8080, 8079)), []tFE{{tInvalid, "spec.egress[0].ports[0].endPort"}}},
		{"endPort 65536", ing(nil, tPortRange("", 80, 65536)), []tFE{{tInvalid, port0 + ".endPort"}}},
		{"endPort < port and port 0", ing(nil, tPortRange("", 0, 0)), []tFE{{tInvalid, port0 + ".endPort"}, {tInvalid, port0 + ".port"}}},
		{"endPort with named port", ing(nil, withPort(tPort("", "http"), end(90))), []tFE{{tInvalid, port0 + ".endPort"}}},
		{"endPort without port", ing(nil, withPort(tPort(corev1.ProtocolUDP, nil), end(90))), []tFE{{tInvalid, port0 + ".endPort"}}},
		{"port name upper case", ing(nil, tPort("", "HTTP")), []tFE{{tInvalid, port0 + ".port"}}},
		{"port name too long", ing(nil, tPort("", "abcdefghijklmnop")), []tFE{{tInvalid, port0 + ".port"}}},
		{"port name digits only", ing(nil, tPort("", "8080")), []tFE{{tInvalid, port0 + ".port"}}},
		{"port name double hyphen", ing(nil, tPort("", "a--b")), []tFE{{tInvalid, port0 + ".port"}}},
		{"port name empty", ing(nil, withPort(tPort("", 1), func(pp *networkingv1.NetworkPolicyPort) { s := intstr.FromString(""); pp.Port = &s })),
			[]tFE{{tInvalid, port0 + ".port"}}},

		// peers
		{"peer with nothing", ing(tPeers(networkingv1.NetworkPolicyPeer{})), []tFE{{tRequired, from0}}},
		{"egress peer with nothing", eg(tPeers(tPodPeer(tAPISel), networkingv1.NetworkPolicyPeer{})), []tFE{{tRequired, "spec.egress[0].to[1]"}}},
		{"ipBlock and podSelector", ing(tPeers(networkingv1.NetworkPolicyPeer{PodSelector: tSel(), IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}})),
			[]tFE{{tForbidden, from0}}},
		{"ipBlock and namespaceSelector", ing(tPeers(networkingv1.NetworkPolicyPeer{NamespaceSelector: tSel(), IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}})),
			[]tFE{{tForbidden, from0}}},

		// ipBlock
		{"cidr empty", ing(ipb("")), []tFE{{tRequired, from0 + ".ipBlock.cidr"}}},
		{"cidr empty with except", ing(ipb("", "10.0.0.0/8")), []tFE{{tRequired, from0 + ".ipBlock.cidr"}}},
		{"cidr garbage", ing(ipb("ten/8")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr without length", ing(ipb("10.0.0.0")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr leading zero in address", ing(ipb("010.0.0.0/8")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr leading zero in length", ing(ipb("10.0.0.0/08")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr with host bits", ing(ipb("10.0.0.1/8")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr IPv6 with host bits", ing(ipb("2001:db8::1/64")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr IPv4-mapped IPv6", ing(ipb("::ffff:10.0.0.0/104")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"cidr length too long", ing(ipb("10.0.0.0/33")), []tFE{{tInvalid, from0 + ".ipBlock.cidr"}}},
		{"except not inside", ing(ipb("10.0.0.0/16", "10.1.0.0/24")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except equal", ing(ipb("10.0.0.0/16", "10.0.0.0/16")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except wider", ing(ipb("10.0.0.0/16", "10.0.0.0/8")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except other family", ing(ipb("10.0.0.0/8", "fd00::/64")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except IPv4 in IPv6 cidr", ing(ipb("::/0", "10.0.0.0/8")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"second except bad", eg(ipb("10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/16")), []tFE{{tInvalid, "spec.egress[0].to[0].ipBlock.except[1]"}}},
		{"except with host bits", ing(ipb("10.0.0.0/8", "10.1.0.1/16")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except leading zeros", ing(ipb("10.0.0.0/8", "10.01.0.0/16")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except IPv4-mapped", ing(ipb("::/0", "::ffff:10.0.0.0/104")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},
		{"except garbage", ing(ipb("10.0.0.0/8", "x")), []tFE{{tInvalid, from0 + ".ipBlock.except[0]"}}},

		// selectors
		{"bad operator", tPolicy("default", "p", tSelExpr(tExpr("app", "Equals", "x"))),
			[]tFE{{tInvalid, "spec.podSelector.matchExpressions[0].operator"}}},
		{"In without values", tPolicy("default", "p", tSelExpr(tExpr("app", metav1.LabelSelectorOpExists), tExpr("app", metav1.LabelSelectorOpIn))),
			[]tFE{{tRequired, "spec.podSelector.matchExpressions[1].values"}}},
		{"NotIn without values", ing(tPeers(tNSPeer(tSelExpr(tExpr("env", metav1.LabelSelectorOpNotIn))))),
			[]tFE{{tRequired, from0 + ".namespaceSelector.matchExpressions[0].values"}}},
		{"Exists with values", eg(tPeers(tPodPeer(tSelExpr(tExpr("app", metav1.LabelSelectorOpExists, "x"))))),
			[]tFE{{tForbidden, "spec.egress[0].to[0].podSelector.matchExpressions[0].values"}}},
		{"DoesNotExist with values", tPolicy("default", "p", tSelExpr(tExpr("app", metav1.LabelSelectorOpDoesNotExist, "x"))),
			[]tFE{{tForbidden, "spec.podSelector.matchExpressions[0].values"}}},
		{"bad label value in matchLabels", tPolicy("default", "p", tSel("app", "no spaces")),
			[]tFE{{tInvalid, "spec.podSelector.matchLabels"}}},
		{"bad label key in matchLabels", ing(tPeers(tNSPodPeer(tSel(), tSel("-bad", "x")))),
			[]tFE{{tInvalid, from0 + ".podSelector.matchLabels"}}},
		{"bad label value in expression", ing(tPeers(tPodPeer(tSelExpr(tExpr("app", metav1.LabelSelectorOpIn, "ok", "not ok"))))),
			[]tFE{{tInvalid, from0 + ".podSelector.matchExpressions[0].values[1]"}}},
		{"bad key in expression", tPolicy("default", "p", tSelExpr(tExpr("a/b/c", metav1.LabelSelectorOpExists))),
			[]tFE{{tInvalid, "spec.podSelector.matchExpressions[0].key"}}},
		{"value too long", tPolicy("default", "p", tSel("app", strings.Repeat("a", 64))),
			[]tFE{{tInvalid, "spec.podSelector.matchLabels"}}},

		// policyTypes
		// The API server accepts a repeated type, so the engine must too.
		{"duplicate policyTypes are accepted", tPolicy("default", "p", nil, tTypes(tIn, tIn)), nil},
		{"unknown policyType", tPolicy("default", "p", nil, tTypes("ingress")), []tFE{{tNotSupp, "spec.policyTypes[0]"}}},
		{"unknown second policyType", tPolicy("default", "p", nil, tTypes(tOut, "Both")), []tFE{{tNotSupp, "spec.policyTypes[1]"}}},

		// metadata
		{"bad name", tPolicy("default", "Bad_Name", nil), []tFE{{tInvalid, "metadata.name"}}},
		{"no name", tPolicy("default", "", nil), []tFE{{tRequired, "metadata.name"}}},
		{"no namespace", tPolicy("", "p", nil), []tFE{{tRequired, "metadata.namespace"}}},
		{"bad namespace", tPolicy("Default", "p", nil), []tFE{{tInvalid, "metadata.namespace"}}},

		// several at once, each with its own path
		{"several", tPolicy("default", "p", tSelExpr(tExpr("app", "Has")),
			tIngress(tPeers(tPodPeer(tAPISel), tIPPeer("10.0.0.1/8")), tPort("", 80), tPort("", 0)),
			tIngress(nil),
			tEgress(tPeers(tIPPeer("10.0.0.0/8", "10.0.0.0/8")), tPortRange("", 10, 9)),
			tTypes(tIn, "Sideways")),
			[]tFE{
				{tInvalid, "spec.egress[0].ports[0].endPort"},
				{tInvalid, "spec.egress[0].to[0].ipBlock.except[0]"},
				{tInvalid, "spec.ingress[0].from[1].ipBlock.cidr"},
				{tInvalid, "spec.ingress[0].ports[1].port"},
				{tInvalid, "spec.podSelector.matchExpressions[0].operator"},
				{tNotSupp, "spec.policyTypes[1]"},
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.np.DeepCopy()
			errs := policylib.ValidatePolicy(c.np)
			want := slices.Clone(c.want)
			slices.SortFunc(want, func(a, b tFE) int { return strings.Compare(a.String(), b.String()) })
			if got := tFieldErrors(errs); !slices.Equal(got, want) {
				t.Errorf("ValidatePolicy:\n got  %v\n want %v\n(%v)", got, want, errs.ToAggregate())
			}
			if !tEqualPolicies(before, c.np) {
				t.Errorf("ValidatePolicy modified its input")
			}
			// SetPolicy accepts exactly the valid ones, and its error
			// carries the same field errors.
			err := policylib.NewEngine().SetPolicy(c.np)
			if (err == nil) != (len(want) == 0) {
				t.Fatalf("SetPolicy: %v, want error %v", err, len(want) > 0)
			}
			if err != nil {
				var pe *policylib.PolicyError
				if !errors.As(err, &pe) {
					t.Fatalf("SetPolicy error %T is not a *PolicyError", err)
				}
				if pe.Policy.Namespace != c.np.Namespace || pe.Policy.Name != c.np.Name {
					t.Errorf("PolicyError.Policy = %v", pe.Policy)
				}
				if got := tFieldErrors(pe.Errs); !slices.Equal(got, want) {
					t.Errorf("PolicyError.Errs %v, want %v", got, want)
				}
				for _, fe := range pe.Errs {
					if !strings.Contains(err.Error(), fe.Field) {
						t.Errorf("error %q does not name %s", err, fe.Field)
					}
					var target *field.Error
					if !errors.As(err, &target) {
						t.Errorf("errors.As(err, *field.Error) failed")
					}
				}
			}
		})
	}
}

// TestValidateTooManyPolicyTypes: more than two policyTypes is invalid at
// spec.policyTypes (the API server stops there; this engine may add the
// per-entry errors too).
func TestValidateTooManyPolicyTypes(t *testing.T) {
	for _, pts := range [][]networkingv1.PolicyType{{tIn, tOut, tIn}, {tIn, tOut, tOut}, {tIn, tOut, "X"}} {
		errs := policylib.ValidatePolicy(tPolicy("default", "p", nil, tTypes(pts...)))
		if !slices.Contains(tFieldErrors(errs), tFE{tInvalid, "spec.policyTypes"}) {
			t.Errorf("policyTypes %v: %v, want Invalid spec.policyTypes", pts, errs)
		}
	}
}

func tEqualPolicies(a, b *networkingv1.NetworkPolicy) bool { return reflect.DeepEqual(a, b) }

func TestDefaultPolicy(t *testing.T) {
	tcp := corev1.ProtocolTCP
	udp := corev1.ProtocolUDP
	types := func(np *networkingv1.NetworkPolicy) []networkingv1.PolicyType { return np.Spec.PolicyTypes }
	cases := []struct {
		name string
		np   *networkingv1.NetworkPolicy
		want []networkingv1.PolicyType
	}{
		{"nothing: Ingress", tPolicy("default", "p", nil), []networkingv1.PolicyType{tIn}},
		{"ingress only: Ingress", tPolicy("default", "p", nil, tIngress(nil)), []networkingv1.PolicyType{tIn}},
		{"egress rules: Ingress, Egress", tPolicy("default", "p", nil, tEgress(nil)), []networkingv1.PolicyType{tIn, tOut}},
		{"egress: [] : Ingress", tPolicy("default", "p", nil, tNoEgressRules()), []networkingv1.PolicyType{tIn}},
		{"explicit Egress kept", tPolicy("default", "p", nil, tTypes(tOut), tIngress(nil)), []networkingv1.PolicyType{tOut}},
		{"explicit Egress, Ingress kept in order", tPolicy("default", "p", nil, tTypes(tOut, tIn)), []networkingv1.PolicyType{tOut, tIn}},
	}
	for _, c := range cases {
		before := c.np.DeepCopy()
		d := policylib.DefaultPolicy(c.np)
		if !slices.Equal(types(d), c.want) {
			t.Errorf("%s: policyTypes %v, want %v", c.name, types(d), c.want)
		}
		if !tEqualPolicies(before, c.np) {
			t.Errorf("%s: DefaultPolicy modified its input", c.name)
		}
		if d == c.np {
			t.Errorf("%s: DefaultPolicy returned its input", c.name)
		}
	}

	np := tPolicy("default", "p", nil,
		tIngress(nil, tPort("", 80), tPort(corev1.ProtocolUDP, 53), tPort("", nil)),
		tEgress(nil, tPort("", "http"), tPortRange("", 1, 2)))
	d := policylib.DefaultPolicy(np)
	wantProto := [][]corev1.Protocol{{tcp, udp, tcp}, {tcp, tcp}}
	for i, ports := range [][]networkingv1.NetworkPolicyPort{d.Spec.Ingress[0].Ports, d.Spec.Egress[0].Ports} {
		for j, p := range ports {
			if p.Protocol == nil || *p.Protocol != wantProto[i][j] {
				t.Errorf("rule %d port %d: protocol %v, want %s", i, j, p.Protocol, wantProto[i][j])
			}
		}
	}
	if np.Spec.Ingress[0].Ports[0].Protocol != nil {
		t.Errorf("DefaultPolicy set a protocol on its input")
	}
	// Defaulting changes nothing that validation sees.
	if errs := policylib.ValidatePolicy(d); len(errs) > 0 {
		t.Errorf("defaulted policy invalid: %v", errs)
	}
	// Idempotent.
	if dd := policylib.DefaultPolicy(d); !tEqualPolicies(d, dd) {
		t.Errorf("DefaultPolicy is not idempotent:\n%s\n%s", d, dd)
	}
}

// TestSetPolicyInvalidUpdateKeepsPrevious: an update the API server would
// reject changes nothing; the previous valid version stays in force.
func TestSetPolicyInvalidUpdateKeepsPrevious(t *testing.T) {
	s := tBaseSnapshot()
	good := tPolicy("default", "web", tWebSel, tIngress(tPeers(tPodPeer(tAPISel)), tPort("", 80)))
	s.Policies = []*networkingv1.NetworkPolicy{good}
	e := tBuild(t, s)
	checks := []tCheck{
		{"default/api", "default/web", tTCP, 80, true},
		{"default/api", "default/web", tTCP, 81, false},
		{"default/db", "default/web", tTCP, 80, false},
		{tOutside, "default/web", tTCP, 80, false},
	}
	tRunChecks(t, e, checks)
	before := tDecide(t, e, "default/api", "default/web", tTCP, 80)

	// Invalid updates that would widen (allow everything) or narrow.
	bads := []*networkingv1.NetworkPolicy{
		tPolicy("default", "web", tWebSel, tIngress(tPeers(tIPPeer("0.0.0.0/0", "0.0.0.0/0")))),
		tPolicy("default", "web", tWebSel, tIngress(nil, tPort("", 0))),
		tPolicy("default", "web", tSelExpr(tExpr("app", "Bogus")), tIngress(nil)),
		tPolicy("default", "web", tWebSel, tTypes(tOut, "Both")),
		tPolicy("default", "web", tWebSel, tIngress(tPeers(networkingv1.NetworkPolicyPeer{}))),
	}
	for i, bad := range bads {
		err := e.SetPolicy(bad)
		var pe *policylib.PolicyError
		if !errors.As(err, &pe) {
			t.Fatalf("bad update %d: err %v (%T), want *PolicyError", i, err, err)
		}
		if pe.Policy.Name != "web" || pe.Policy.Namespace != "default" || len(pe.Errs) == 0 {
			t.Errorf("bad update %d: PolicyError %+v", i, pe)
		}
		tRunChecks(t, e, checks)
		if after := tDecide(t, e, "default/api", "default/web", tTCP, 80); after != before {
			t.Errorf("bad update %d: decision %+v, was %+v", i, after, before)
		}
	}
	x, err := e.Explain(tFlow(t, "default/db", "default/web", tTCP, 80))
	if err != nil {
		t.Fatal(err)
	}
	if got := tKeys(x.IngressPolicies); !slices.Equal(got, []string{"default/web"}) {
		t.Errorf("IngressPolicies %v", got)
	}

	if !e.HasPolicy("default", "web") {
		t.Error("HasPolicy: the previous version is gone")
	}

	// An invalid policy that was never valid is simply absent.
	if err := e.SetPolicy(tPolicy("default", "other", tSel(), tIngress(nil, tPort("", 70000)))); err == nil {
		t.Fatal("invalid new policy accepted")
	}
	if e.HasPolicy("default", "other") {
		t.Error("HasPolicy: an invalid new policy is held")
	}
	tRunChecks(t, e, []tCheck{{"default/api", "default/db", tTCP, 5432, true}})

	// Build reports invalid policies as *PolicyError and keeps the valid ones.
	s.Policies = []*networkingv1.NetworkPolicy{good, bads[0], tPolicy("default", "x", nil, tTypes("Nope"))}
	e2, err := policylib.Build(s)
	var pe *policylib.PolicyError
	if err == nil || !errors.As(err, &pe) {
		t.Fatalf("Build: err %v, want *PolicyError", err)
	}
	tRunChecks(t, e2, checks)
	if !strings.Contains(err.Error(), "default/x") || !strings.Contains(err.Error(), "spec.policyTypes[0]") {
		t.Errorf("Build error %q does not name default/x spec.policyTypes[0]", err)
	}
}

func TestValidateService(t *testing.T) {
	port := func(p corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "s"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{p}}}
	}
	tests := []struct {
		name string
		p    corev1.ServicePort
		want []tFE
	}{
		{"plain", corev1.ServicePort{Port: 80}, nil},
		{"named target", corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolUDP, NodePort: 30080}, nil},
		{"port 0", corev1.ServicePort{Port: 0}, []tFE{{field.ErrorTypeInvalid, "spec.ports[0].port"}}},
		{"target out of range", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(99999)}, []tFE{{field.ErrorTypeInvalid, "spec.ports[0].targetPort"}}},
		{"bad target name", corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("HTTP_1")}, []tFE{{field.ErrorTypeInvalid, "spec.ports[0].targetPort"}}},
		{"bad protocol", corev1.ServicePort{Port: 80, Protocol: "ICMP"}, []tFE{{field.ErrorTypeNotSupported, "spec.ports[0].protocol"}}},
		{"nodePort out of range", corev1.ServicePort{Port: 80, NodePort: 70000}, []tFE{{field.ErrorTypeInvalid, "spec.ports[0].nodePort"}}},
	}
	for _, tt := range tests {
		if got := tFieldErrors(policylib.ValidateService(port(tt.p))); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}

	// SetService refuses one, naming it and the field, and keeps the
	// previous version.
	e := policylib.NewEngine()
	backend := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x", Labels: map[string]string{"app": "x"}},
		Status: corev1.PodStatus{PodIP: "10.0.0.1"}}
	if err := e.SetPod(backend); err != nil {
		t.Fatal(err)
	}
	if err := e.SetService(port(corev1.ServicePort{Port: 80})); err != nil {
		t.Fatal(err)
	}
	err := e.SetService(port(corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(99999)}))
	if err == nil || !strings.HasPrefix(err.Error(), "Service default/s: spec.ports[0].targetPort: Invalid value: 99999") {
		t.Errorf("SetService: %v", err)
	}
	// The valid version stands: port 80 resolves to the pod's port 80, not
	// 99999.
	if flows, err := e.ResolveService(policylib.PodEndpoint("default", "nobody"), "default", "s", 80, policylib.TCP); err != nil || len(flows) != 1 || flows[0].Flow.Port != 80 {
		t.Errorf("after the refused update: %+v, %v", flows, err)
	}
}

// TestNilAndNamelessObjects: objects the engine cannot hold are errors,
// never panics, and Build reports each; enum values out of range print as
// such.
func TestNilAndNamelessObjects(t *testing.T) {
	e := policylib.NewEngine()
	for name, err := range map[string]error{
		"nil policy":       e.SetPolicy(nil),
		"nil pod":          e.SetPod(nil),
		"nameless pod":     e.SetPod(&corev1.Pod{}),
		"nil service":      e.SetService(nil),
		"nameless service": e.SetService(&corev1.Service{}),
		"nil node":         e.SetNode(nil),
		"nameless node":    e.SetNode(&corev1.Node{}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	e.SetNamespace(nil) // nothing to hold, nothing to report: no panic
	if pods := e.Pods(); len(pods) != 0 {
		t.Errorf("pods %v", pods)
	}
	_, err := policylib.Build(policylib.Snapshot{
		Namespaces: []*corev1.Namespace{nil}, Pods: []*corev1.Pod{nil}, Policies: []*networkingv1.NetworkPolicy{nil},
		Nodes: []*corev1.Node{nil}, Services: []*corev1.Service{nil},
	})
	if err == nil || len(err.(interface{ Unwrap() []error }).Unwrap()) != 5 {
		t.Errorf("Build: %v, want 5 errors", err)
	}
	if got := policylib.Lint(policylib.Snapshot{Pods: []*corev1.Pod{nil}}); len(got) != 0 {
		t.Errorf("Lint: %v", got)
	}
	if s := policylib.Outcome(9).String(); s != "Outcome(9)" {
		t.Errorf("Outcome(9) = %q", s)
	}
	if s := policylib.Direction(7).String(); s != "Direction(7)" {
		t.Errorf("Direction(7) = %q", s)
	}
}

// TestExplainLabelsAreACopy: what Explain hands out cannot change the
// engine.
func TestExplainLabelsAreACopy(t *testing.T) {
	e := tBuild(t, tBaseSnapshot())
	f := tFlow(t, "default/api", "default/web", tTCP, 80)
	x, err := e.Explain(f)
	if err != nil {
		t.Fatal(err)
	}
	for k := range x.From.Labels {
		x.From.Labels[k] = "changed"
	}
	x2, err := e.Explain(f)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range x2.From.Labels {
		if v == "changed" {
			t.Errorf("label %s changed in the engine", k)
		}
	}
}
