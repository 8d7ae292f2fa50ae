package netns_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podwall/podwall/internal/netns"
)

func TestLab(t *testing.T) {
	t.Parallel()
	lab := netns.New(t)
	a4, a6 := netip.MustParseAddr("10.250.0.1"), netip.MustParseAddr("fd00:250::1")
	b4, b6 := netip.MustParseAddr("10.250.0.2"), netip.MustParseAddr("fd00:250::2")
	node4, node6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fd00:192::1")
	if err := lab.AddNodeAddrs(node4, node6); err != nil {
		t.Fatal(err)
	}
	a, err := lab.AddHost("a", a4, a6)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost("b", b4, b6)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*netns.NS{a, b, lab.Node} {
		if err := n.Serve([]int{80}, []int{80}); err != nil {
			t.Fatal(err)
		}
	}
	const timeout = 2 * time.Second
	type probe struct {
		name string
		from *netns.NS
		run  func() error
	}
	var probes []probe
	for _, pair := range []struct {
		from, to *netns.NS
	}{{a, b}, {b, a}, {lab.Node, a}, {a, lab.Node}} {
		for _, v6 := range []bool{false, true} {
			dst, _ := pair.to.Addr(v6)
			from := pair.from
			probes = append(probes,
				probe{"tcp " + dst.String(), from, func() error { return from.ProbeTCP(dst, 80, timeout) }},
				probe{"udp " + dst.String(), from, func() error { return from.ProbeUDP(dst, 80, timeout) }},
				probe{"icmp " + dst.String(), from, func() error { return from.ProbeICMP(dst, timeout) }},
				probe{"tcp refused " + dst.String(), from, func() error { return from.ProbeTCP(dst, 81, timeout) }},
			)
		}
	}
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.run(); !netns.Reached(err) {
				t.Errorf("%s -> %s: %v", p.from.Name, p.name, err)
			}
		}()
	}
	wg.Wait()

	// Nobody has this address: the probe times out, it is not refused.
	start := time.Now()
	err = a.ProbeTCP(netip.MustParseAddr("10.250.0.99"), 80, 300*time.Millisecond)
	if !netns.ErrTimeout(err) {
		t.Errorf("probe to a missing host: got %v, want a timeout", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("probe took %v", d)
	}

	// The namespaces are separate: a's addresses are not in the node.
	out, err := lab.Node.Run(t.Context(), "ip", "-o", "addr")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), a4.String()) {
		t.Errorf("node namespace has a's address:\n%s", out)
	}
	v, err := lab.Node.Run(t.Context(), "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")
	if err != nil || strings.TrimSpace(string(v)) != "1" {
		t.Errorf("bridge-nf-call-iptables in the node namespace = %q, %v; want 1", v, err)
	}
}

func TestCleanup(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	var names []string
	t.Run("lab", func(t *testing.T) {
		lab := netns.New(t)
		h, err := lab.AddHost("h", netip.MustParseAddr("10.250.1.1"))
		if err != nil {
			t.Fatal(err)
		}
		names = []string{lab.Node.Name, h.Name}
	})
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

// Build and Close work without a testing.TB, as podwall demo uses them.
func TestBuildClose(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	lab, err := netns.Build()
	if err != nil {
		t.Fatal(err)
	}
	h, err := lab.AddHost("h", netip.MustParseAddr("10.250.2.1"))
	if err != nil {
		lab.Close()
		t.Fatal(err)
	}
	if err := h.Serve([]int{80}, nil); err != nil {
		lab.Close()
		t.Fatal(err)
	}
	// A thread that stays in the namespace.
	done := make(chan error, 1)
	if err := h.Go(func() {
		ln, err := net.Listen("tcp", "10.250.2.1:81")
		if err == nil {
			ln.Close()
		}
		done <- err
	}); err != nil {
		t.Error(err)
	} else if err := <-done; err != nil {
		t.Errorf("listening in the namespace from Go: %v", err)
	}
	names := []string{lab.Node.Name, h.Name}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
	if _, err := lab.AddHost("late", netip.MustParseAddr("10.250.2.2")); err == nil {
		t.Error("AddHost on a closed lab succeeded")
	}
}
