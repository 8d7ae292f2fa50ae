package enforcer_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
)

// The dataplane tests build a lab (internal/netns): a node namespace with a
// bridge, a namespace per pod and per other host, echo servers on TCP and
// UDP 80 and 81 everywhere, and the Applier working in the node namespace.
// They probe real TCP, UDP and ICMP between every pair and compare what the
// kernel lets through with the ruleset's model, which TestModelMatchesDecide
// and checkModel tie to policylib's Decide.

const (
	probeTimeout   = 250 * time.Millisecond // a denied probe waits this long
	confirmTimeout = 2 * time.Second        // a surprising result is probed again with this
	probeWorkers   = 48
)

type world struct {
	t       *testing.T
	lab     *netns.Lab
	applier *enforcer.Applier
	owner   map[netip.Addr]*netns.NS
}

// newWorld builds a lab for the scenario's pods, node addresses (on the
// bridge) and other hosts.
func newWorld(t *testing.T, s scenario, opts ...enforcer.Option) *world {
	t.Helper()
	lab := netns.New(t)
	w := &world{t: t, lab: lab, owner: map[netip.Addr]*netns.NS{}}
	if err := lab.AddNodeAddrs(s.nodeAddrs...); err != nil {
		t.Fatal(err)
	}
	hosts := []*netns.NS{lab.Node}
	for _, a := range s.nodeAddrs {
		w.owner[a] = lab.Node
	}
	add := func(name string, addrs []netip.Addr) {
		h, err := lab.AddHost(name, addrs...)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
		for _, a := range addrs {
			w.owner[a] = h
		}
	}
	for i, p := range s.snap.Pods {
		add(fmt.Sprintf("p%d", i), podAddrs(p))
	}
	for i, a := range s.others {
		add(fmt.Sprintf("o%d", i), []netip.Addr{a})
	}
	for _, h := range hosts {
		if err := h.Serve([]int{80, 81}, []int{80, 81}); err != nil {
			t.Fatal(err)
		}
	}
	w.applier = applierIn(t, lab.Node, opts...)
	return w
}

type probe struct {
	src, dst netip.Addr
	proto    policylib.Protocol
	port     int32
}

func (p probe) String() string {
	if p.proto == policylib.ICMP {
		return fmt.Sprintf("%s -> %s ICMP", p.src, p.dst)
	}
	return fmt.Sprintf("%s -> %s %s/%d", p.src, p.dst, p.proto, p.port)
}

// run makes the probe and reports whether the traffic got through.
func (w *world) run(p probe, timeout time.Duration) bool {
	from := w.owner[p.src]
	var err error
	switch p.proto {
	case policylib.TCP:
		err = from.ProbeTCP(p.dst, int(p.port), timeout)
	case policylib.UDP:
		err = from.ProbeUDP(p.dst, int(p.port), timeout)
	default:
		err = from.ProbeICMP(p.dst, timeout)
	}
	if err != nil && !netns.Dropped(err) && !netns.Reached(err) {
		w.t.Errorf("probe %s: %v", p, err)
	}
	return netns.Reached(err)
}

// probes lists every probe between the scenario's addresses: for IPv4 each
// of kernelProbes, for IPv6 the protocols in v6 (none when nil).
func (s scenario) probes(v4 []policylib.Protocol, v6 []policylib.Protocol) []probe {
	var out []probe
	addrs := s.endpointAddrs()
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			protos := v4
			if src.Is6() {
				protos = v6
			}
			for _, pr := range kernelProbes {
				if slices.Contains(protos, pr.proto) {
					out = append(out, probe{src, dst, pr.proto, pr.port})
				}
			}
		}
	}
	return out
}

var allProtocols = []policylib.Protocol{policylib.TCP, policylib.UDP, policylib.ICMP}

// check applies the scenario's ruleset and compares every probe with the
// ruleset's model (checked against policylib first). It returns the
// mismatches, each confirmed by a second, slower probe.
func (w *world) check(s scenario, probes []probe) []string {
	w.t.Helper()
	e, rs := s.compile(w.t)
	checkModel(w.t, s, e, rs)
	apply(w.t, w.applier, rs)
	type result struct {
		p         probe
		want, got bool
	}
	jobs := make(chan probe)
	results := make(chan result)
	var wg sync.WaitGroup
	for range probeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				want := rs.Allowed(p.src, p.dst, p.proto, p.port)
				got := w.run(p, probeTimeout)
				if got != want {
					got = w.run(p, confirmTimeout)
				}
				results <- result{p, want, got}
			}
		}()
	}
	go func() {
		for _, p := range probes {
			jobs <- p
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	var bad []string
	allowed := 0
	for r := range results {
		if r.got {
			allowed++
		}
		if r.got != r.want {
			bad = append(bad, fmt.Sprintf("%s: kernel allows=%v, policy allows=%v", r.p, r.got, r.want))
		}
	}
	slices.Sort(bad)
	w.t.Logf("%s: %d probes, %d got through", s.name, len(probes), allowed)
	return bad
}

func (w *world) mustMatch(s scenario, probes []probe) {
	w.t.Helper()
	if bad := w.check(s, probes); len(bad) > 0 {
		w.t.Errorf("%s: %d of %d probes disagree with the policy:\n%s", s.name, len(bad), len(probes), strings.Join(bad, "\n"))
	}
}

// TestSeedDataplane runs the seed scenario's stages: every pod, the local
// node (192.168.2.101, through the output hook) and the other nodes (through
// the forward hook) probe every other with TCP to port 80 and ICMP echo.
func TestSeedDataplane(t *testing.T) {
	t.Parallel()
	stages := []scenario{seedStage(t, ""), seedStage(t, "networkpolicy.yaml"), seedStage(t, "networkpolicy-ipblock.yaml")}
	w := newWorld(t, stages[0])
	protos := []policylib.Protocol{policylib.TCP, policylib.ICMP}
	var tcp80 []probe
	for _, p := range stages[0].probes(protos, nil) {
		if p.proto == policylib.ICMP || p.port == 80 {
			tcp80 = append(tcp80, p)
		}
	}
	for _, s := range stages {
		w.mustMatch(s, tcp80)
	}
	// The walkthrough's observations, explicitly.
	httpd1 := netip.MustParseAddr("10.244.2.11")
	busybox := netip.MustParseAddr("10.244.1.20")
	access := netip.MustParseAddr("10.244.2.21")
	master := netip.MustParseAddr("192.168.2.100")
	for _, c := range []struct {
		stage    int
		src      netip.Addr
		proto    policylib.Protocol
		expected bool
	}{
		{0, busybox, policylib.TCP, true}, {0, busybox, policylib.ICMP, true},
		{1, busybox, policylib.TCP, false}, {1, busybox, policylib.ICMP, false},
		{1, access, policylib.TCP, true}, {1, access, policylib.ICMP, false},
		{1, master, policylib.TCP, false},
		{2, master, policylib.TCP, true}, {2, busybox, policylib.TCP, false},
	} {
		_, rs := stages[c.stage].compile(t)
		apply(t, w.applier, rs)
		p := probe{c.src, httpd1, c.proto, 80}
		timeout := probeTimeout
		if c.expected {
			timeout = confirmTimeout
		}
		if got := w.run(p, timeout); got != c.expected {
			t.Errorf("stage %d: %s: got through=%v, the walkthrough says %v", c.stage, p, got, c.expected)
		}
	}
	// With the host judged by ingress rules, the local node's own traffic
	// matches policylib exactly.
	for _, s := range stages[1:] {
		s.opts.AllowHostToLocalPods = enforcer.Bool(false)
		s.name += "-host-judged"
		var fromNode []probe
		for _, p := range tcp80 {
			if p.src == seedNode1 {
				fromNode = append(fromNode, p)
			}
		}
		w.mustMatch(s, fromNode)
	}
}

// TestE2EModelDataplane probes the upstream e2e model (x/y/z x a/b/c,
// dual stack) under each e2e-like shape: TCP and UDP on 80 and 81 and ICMP
// over IPv4, TCP and ICMP over IPv6.
func TestE2EModelDataplane(t *testing.T) {
	t.Parallel()
	cases := e2eCases()
	w := newWorld(t, cases[0])
	probes := cases[0].probes(allProtocols, []policylib.Protocol{policylib.TCP, policylib.ICMP})
	for _, s := range cases {
		w.mustMatch(s, probes)
	}
}

// TestDifferentialDataplane draws random policies over six pods and checks
// that the kernel's reachability matrix equals policylib's every time.
func TestDifferentialDataplane(t *testing.T) {
	t.Parallel()
	seeds := 25
	if testing.Short() {
		seeds = 10
	}
	w := newWorld(t, randomScenario(0))
	for seed := range uint64(seeds) {
		s := randomScenario(seed)
		if bad := w.check(s, s.probes(allProtocols, nil)); len(bad) > 0 {
			t.Errorf("seed %d: %d probes disagree with policylib:\n%s\npolicies:\n%s", seed, len(bad), strings.Join(bad, "\n"), describePolicies(s))
		}
	}
}

// TestUpdateNeverOpens switches between two policies while probes run and
// checks that no probe ever gets through where both policies deny, and
// none fails where both allow: every update is atomic.
func TestUpdateNeverOpens(t *testing.T) {
	t.Parallel()
	a := e2eScenario("a",
		withIngress(policy("x", "only-y", sel(), ingressOnly), ingress(peers(nsPeer(sel("ns", "y"))), numPort(tcp, 80))),
		policy("z", "deny", sel(), ingressOnly))
	b := e2eScenario("b",
		withIngress(policy("x", "only-z", sel(), ingressOnly), ingress(peers(nsPeer(sel("ns", "z"))), numPort(tcp, 80))),
		withIngress(policy("y", "deny", sel("pod", "a"), ingressOnly)),
		withIngress(policy("z", "deny", sel(), ingressOnly), ingress(peers(podPeer(sel("pod", "b"))), numPort(udp, 80))))
	w := newWorld(t, a)
	_, rsA := a.compile(t)
	_, rsB := b.compile(t)
	var bothDeny, bothAllow []probe
	for _, p := range a.probes([]policylib.Protocol{policylib.TCP}, nil) {
		if p.port != 80 {
			continue
		}
		switch inA, inB := rsA.Allowed(p.src, p.dst, p.proto, p.port), rsB.Allowed(p.src, p.dst, p.proto, p.port); {
		case !inA && !inB:
			bothDeny = append(bothDeny, p)
		case inA && inB:
			bothAllow = append(bothAllow, p)
		}
	}
	if len(bothDeny) < 10 || len(bothAllow) < 10 {
		t.Fatalf("scenarios too similar: %d denied by both, %d allowed by both", len(bothDeny), len(bothAllow))
	}
	apply(t, w.applier, rsA)
	ctx, stop := context.WithCancel(context.Background())
	var leaks, losses, runs atomic.Int64
	var wg sync.WaitGroup
	loop := func(ps []probe, timeout time.Duration, bad *atomic.Int64, want bool) {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			p := ps[i%len(ps)]
			if w.run(p, timeout) != want {
				bad.Add(1)
				t.Errorf("during updates: %s got through=%v, both policies say %v", p, !want, want)
			}
			runs.Add(1)
			time.Sleep(10 * time.Millisecond) // bounded load
		}
	}
	for k := range 12 {
		wg.Add(2)
		go loop(rotate(bothDeny, k), probeTimeout, &leaks, false)
		go loop(rotate(bothAllow, k), confirmTimeout, &losses, true)
	}
	full := 0
	for i := range 40 {
		rs := rsB
		if i%2 == 1 {
			rs = rsA
		}
		if i%8 == 7 {
			w.applier.Forget() // a full replace now and then
			full++
		}
		apply(t, w.applier, rs)
		time.Sleep(60 * time.Millisecond)
	}
	stop()
	wg.Wait()
	t.Logf("%d probes during 40 updates (%d full replaces): %d leaks, %d losses", runs.Load(), full, leaks.Load(), losses.Load())
}

func rotate(ps []probe, k int) []probe {
	k %= len(ps)
	return append(slices.Clone(ps[k:]), ps[:k]...)
}

// TestConntrackCut checks that an established connection a change denies
// stops, while one the change still allows goes on; and that without the
// cleanup the kernel would let the denied one go on.
func TestConntrackCut(t *testing.T) {
	t.Parallel()
	open := e2eScenario("open")
	closed := e2eScenario("closed",
		withIngress(policy("x", "only-y", sel("pod", "a"), ingressOnly), ingress(peers(nsPeer(sel("ns", "y"))))))
	w := newWorld(t, open, enforcer.WithConntrackCleanup(false))
	_, rsOpen := open.compile(t)
	_, rsClosed := closed.compile(t)
	xa, xb, ya := e2eAddr(0, 0, false), e2eAddr(0, 1, false), e2eAddr(1, 0, false)
	xa6, xb6 := e2eAddr(0, 0, true), e2eAddr(0, 1, true)
	apply(t, w.applier, rsOpen)

	dial := func(from, to netip.Addr) func() error {
		c, err := w.owner[from].DialTCP(to, 80, confirmTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return func() error { return netns.Echo(c, 500*time.Millisecond) }
	}
	denied, denied6, allowed := dial(xb, xa), dial(xb6, xa6), dial(ya, xa)
	udpDenied := udpSession(t, w.owner[xb], xa)
	for name, echo := range map[string]func() error{"x/b->x/a": denied, "x/b->x/a v6": denied6, "y/a->x/a": allowed, "udp x/b->x/a": udpDenied} {
		if err := echo(); err != nil {
			t.Fatalf("%s before the change: %v", name, err)
		}
	}

	// Without cleanup, conntrack keeps the denied connection alive.
	apply(t, w.applier, rsClosed)
	if err := denied(); err != nil {
		t.Fatalf("without conntrack cleanup the established connection should survive (that is the kernel's behaviour the cleanup fixes): %v", err)
	}
	if w.run(probe{xb, xa, policylib.TCP, 80}, probeTimeout) {
		t.Fatal("a new connection got through the closed policy")
	}

	// With cleanup: back to open, then closed again.
	w.applier = applierIn(t, w.lab.Node)
	apply(t, w.applier, rsOpen)
	st := apply(t, w.applier, rsClosed)
	if st.ConntrackDeleted < 3 {
		t.Errorf("conntrack entries deleted = %d, want at least 3 (TCP over IPv4 and IPv6, UDP)", st.ConntrackDeleted)
	}
	for name, echo := range map[string]func() error{"x/b->x/a": denied, "x/b->x/a v6": denied6, "udp x/b->x/a": udpDenied} {
		if err := echo(); err == nil {
			t.Errorf("%s: the established flow still works after a change denied it", name)
		}
	}
	if err := allowed(); err != nil {
		t.Errorf("y/a->x/a: the allowed connection broke: %v", err)
	}
}

// TestConntrackCutLostPeer checks the targeted cleanup: when a pod's
// ingress loses one peer, only the flows from that peer are read (through
// the kernel's dump filter for IPv4) and cut, and the others go on.
func TestConntrackCutLostPeer(t *testing.T) {
	t.Parallel()
	toA := func(name string, from ...string) *networkingv1.NetworkPolicy {
		var ps []networkingv1.NetworkPolicyPeer
		for _, f := range from {
			ps = append(ps, podPeer(sel("pod", f)))
		}
		return withIngress(policy("x", "to-a", sel("pod", "a"), ingressOnly), ingress(ps))
	}
	both, onlyB := e2eScenario("b and c", toA("b", "b", "c")), e2eScenario("b", toA("b", "b"))
	w := newWorld(t, both)
	_, rsBoth := both.compile(t)
	_, rsB := onlyB.compile(t)
	xa, xb, xc, ya := e2eAddr(0, 0, false), e2eAddr(0, 1, false), e2eAddr(0, 2, false), e2eAddr(1, 0, false)
	xa6, xc6 := e2eAddr(0, 0, true), e2eAddr(0, 2, true)
	apply(t, w.applier, rsBoth)
	dial := func(from, to netip.Addr) func() error {
		c, err := w.owner[from].DialTCP(to, 80, confirmTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return func() error { return netns.Echo(c, 500*time.Millisecond) }
	}
	lost, lost6, kept, other := dial(xc, xa), dial(xc6, xa6), dial(xb, xa), dial(ya, xb)
	for _, echo := range []func() error{lost, lost6, kept, other} {
		if err := echo(); err != nil {
			t.Fatalf("before the change: %v", err)
		}
	}
	// With so few entries one unfiltered dump costs less than the two that
	// filtering takes (each walks the kernel's table); make it filter.
	enforcer.FilterConntrackAlways(w.applier)
	st := apply(t, w.applier, rsB)
	// One filtered IPv4 dump for x/c's address, one IPv6 dump.
	if st.ConntrackDumps != 2 || st.ConntrackDeleted != 2 {
		t.Errorf("conntrack dumps %d, entries read %d, deleted %d; want 2 dumps and 2 entries deleted", st.ConntrackDumps, st.ConntrackRead, st.ConntrackDeleted)
	}
	for name, echo := range map[string]func() error{"x/c->x/a": lost, "x/c->x/a v6": lost6} {
		if err := echo(); err == nil {
			t.Errorf("%s: the established flow still works after a change denied it", name)
		}
	}
	for name, echo := range map[string]func() error{"x/b->x/a": kept, "y/a->x/b": other} {
		if err := echo(); err != nil {
			t.Errorf("%s: an allowed connection broke: %v", name, err)
		}
	}
}

// udpSession opens a UDP socket from a namespace to dst:80 and returns an
// echo over it, which reuses one conntrack entry.
func udpSession(t *testing.T, from *netns.NS, dst netip.Addr) func() error {
	c, err := from.DialUDP(dst, 80)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() error { return netns.Echo(c, 500*time.Millisecond) }
}

// TestConntrackCutNAT checks the cleanup on a translated flow, as a Service
// makes: the node connects to a virtual address that DNAT sends to x/a, so
// the conntrack entry's original destination is the virtual address and
// only its reply tuple names the pod. Denying the node's traffic to x/a
// (with the host judged by ingress rules) must cut it.
func TestConntrackCutNAT(t *testing.T) {
	t.Parallel()
	needNft(t)
	open := e2eScenario("open")
	open.opts.AllowHostToLocalPods = enforcer.Bool(false)
	closed := e2eScenario("closed",
		withIngress(policy("x", "only-y", sel("pod", "a"), ingressOnly), ingress(peers(nsPeer(sel("ns", "y"))))))
	closed.opts.AllowHostToLocalPods = enforcer.Bool(false)
	w := newWorld(t, open)
	xa := e2eAddr(0, 0, false)
	vip := netip.MustParseAddr("10.96.0.10")
	if _, err := w.lab.Node.Run(context.Background(), "nft", fmt.Sprintf(
		"add table ip svc; add chain ip svc out { type nat hook output priority -100; }; add rule ip svc out ip daddr %s tcp dport 8080 dnat to %s:80", vip, xa)); err != nil {
		t.Fatal(err)
	}
	_, rsOpen := open.compile(t)
	_, rsClosed := closed.compile(t)
	apply(t, w.applier, rsOpen)
	c, err := w.lab.Node.DialTCP(vip, 8080, confirmTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := netns.Echo(c, time.Second); err != nil {
		t.Fatalf("through the virtual address before the change: %v", err)
	}
	st := apply(t, w.applier, rsClosed)
	if st.ConntrackDeleted < 1 {
		t.Errorf("no conntrack entry deleted: %+v", st)
	}
	if err := netns.Echo(c, 500*time.Millisecond); err == nil {
		t.Error("the translated connection still works after the change denied it")
	}
}

// IPv6 neighbour discovery (ICMPv6 types 133-137) passes whatever the
// policies say: a pod isolated for egress still solicits its router and
// neighbours from its own address, and one isolated for ingress still
// hears advertisements and redirects. An echo request, which the policies
// judge, is the control.
func TestNeighbourDiscoveryPasses(t *testing.T) {
	t.Parallel()
	node := netip.MustParseAddr("fd00:77::1")
	addrA, addrB := netip.MustParseAddr("fd00:77::a"), netip.MustParseAddr("fd00:77::b")
	s := scenario{
		name: "ndp",
		snap: policylib.Snapshot{
			Namespaces: []*corev1.Namespace{namespace("x", nil)},
			Pods: []*corev1.Pod{
				pod("x", "a", labels("pod", "a"), []netip.Addr{addrA}),
				pod("x", "b", labels("pod", "b"), []netip.Addr{addrB}),
			},
			Policies: []*networkingv1.NetworkPolicy{
				policy("x", "a-no-egress", sel("pod", "a"), egressOnly),
				policy("x", "b-no-ingress", sel("pod", "b"), ingressOnly),
			},
		},
		nodeAddrs: []netip.Addr{node},
		opts:      enforcer.Options{AllowHostToLocalPods: enforcer.Bool(false)},
	}
	lab := netns.New(t)
	if err := lab.AddNodeAddrs(node); err != nil {
		t.Fatal(err)
	}
	a, err := lab.AddHost("a", addrA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost("b", addrB)
	if err != nil {
		t.Fatal(err)
	}
	_, rs := s.compile(t)
	apply(t, applierIn(t, lab.Node), rs)

	const echoRequest = 128
	types := []byte{echoRequest, 133, 134, 135, 136, 137}
	for _, c := range []struct {
		what     string
		from, to *netns.NS
		src, dst netip.Addr
	}{
		{"egress-isolated pod to the node (input)", a, lab.Node, addrA, node},
		{"egress-isolated pod to an ingress-isolated pod (forward)", a, b, addrA, addrB},
		{"the node to an ingress-isolated pod (output)", lab.Node, b, node, addrB},
	} {
		got := icmp6Through(t, c.from, c.to, c.src, c.dst, types)
		want := []byte{133, 134, 135, 136, 137}
		if !slices.Equal(got, want) {
			t.Errorf("%s: ICMPv6 types that got through %v, want %v", c.what, got, want)
		}
	}
}

// icmp6Through sends one ICMPv6 message of each type from src (in from) to
// dst (in to), each marked so the receiver tells it from the kernel's own
// neighbour discovery, and returns the types that arrived, sorted.
func icmp6Through(t *testing.T, from, to *netns.NS, src, dst netip.Addr, types []byte) []byte {
	t.Helper()
	marker := []byte("podwall-ndp-test")
	var rx, tx int
	if err := to.Do(func() (err error) {
		rx, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300_000}); err != nil {
		t.Fatal(err)
	}
	if err := from.Do(func() (err error) {
		if tx, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6); err != nil {
			return err
		}
		// Hop limit 255, as neighbour discovery must be sent with.
		if err := unix.SetsockoptInt(tx, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255); err != nil {
			return err
		}
		return unix.Bind(tx, &unix.SockaddrInet6{Addr: src.As16()})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	for _, typ := range types {
		// Type, code, checksum (the kernel fills it in), 4 reserved bytes.
		msg := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, marker...)
		err := unix.Sendto(tx, msg, 0, &unix.SockaddrInet6{Addr: dst.As16()})
		if err != nil && !errors.Is(err, unix.EPERM) { // EPERM: the output hook dropped it
			t.Fatalf("send ICMPv6 type %d %s -> %s: %v", typ, src, dst, err)
		}
	}
	var got []byte
	buf := make([]byte, 1500)
	for {
		n, sa, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			break // the timeout: everything that got through is in
		}
		sa6, ok := sa.(*unix.SockaddrInet6)
		if !ok || netip.AddrFrom16(sa6.Addr) != src || n < 8+len(marker) || string(buf[8:8+len(marker)]) != string(marker) {
			continue
		}
		if !slices.Contains(got, buf[0]) {
			got = append(got, buf[0])
		}
	}
	slices.Sort(got)
	return got
}
