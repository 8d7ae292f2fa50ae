package enforcer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/podwall/podwall/internal/benchcluster"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// needNft skips tests that read the kernel's tables back with the nft tool.
func needNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the nft tool is missing (apt-get install -y nftables); it reads tables back")
	}
}

// applierIn returns an Applier working in the namespace.
func applierIn(t testing.TB, n *netns.NS, opts ...enforcer.Option) *enforcer.Applier {
	t.Helper()
	fd, err := n.FD()
	if err != nil {
		t.Fatal(err)
	}
	return enforcer.NewApplier(append([]enforcer.Option{enforcer.WithNetNS(fd)}, opts...)...)
}

func apply(t testing.TB, a *enforcer.Applier, rs *enforcer.Ruleset) enforcer.Stats {
	t.Helper()
	st, err := a.Apply(context.Background(), rs)
	if err != nil {
		t.Fatalf("Apply: %v (stats %+v)", err, st)
	}
	return st
}

// listTable returns the kernel's table as nft -j lists it, normalised for
// comparison: handles dropped, set elements and objects sorted, rules kept
// in order within their chain.
func listTable(t *testing.T, n *netns.NS, table string) string {
	t.Helper()
	out, err := n.Run(context.Background(), "nft", "-j", "list", "table", "inet", table)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var objs []string
	ruleIndex := map[string]int{}
	for _, o := range doc.Nftables {
		if _, ok := o["metainfo"]; ok {
			continue
		}
		for kind, v := range o {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			delete(m, "handle")
			if e, ok := m["elem"].([]any); ok {
				slices.SortFunc(e, func(a, b any) int { return strings.Compare(jsonString(a), jsonString(b)) })
			}
			if kind == "rule" {
				c := fmt.Sprint(m["chain"])
				m["index"] = ruleIndex[c]
				ruleIndex[c]++
			}
		}
		objs = append(objs, jsonString(o))
	}
	slices.Sort(objs)
	return strings.Join(objs, "\n")
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// loadText loads a rendered ruleset into the namespace with nft -f.
func loadText(t *testing.T, n *netns.NS, text string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := n.Run(context.Background(), "nft", "-f", f.Name()); err != nil {
		t.Fatal(err)
	}
}

// TestNetlinkMatchesText installs each golden ruleset over netlink in one
// namespace and as text with nft -f in another: the kernel must hold the
// same table, so the text a dry run prints is what Apply does.
func TestNetlinkMatchesText(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	textNS, err := lab.AddHost("text")
	if err != nil {
		t.Fatal(err)
	}
	a := applierIn(t, lab.Node)
	for _, s := range goldenScenarios(t) {
		_, rs := s.compile(t)
		apply(t, a, rs)
		loadText(t, textNS, rs.Render())
		if got, want := listTable(t, lab.Node, rs.Table), listTable(t, textNS, rs.Table); got != want {
			t.Errorf("%s: netlink and text tables differ:\n%s", s.name, lineDiff(want, got))
		}
	}
}

// sequence is a run of rulesets over one set of pods: policies change,
// pods come, go and change labels.
func sequence(t *testing.T) []scenario {
	var steps []scenario
	steps = append(steps, e2eCases()...)
	// Pods go and come back; one gains rules from a policy.
	gone := e2eCases()[1]
	gone.name = "x-b-gone"
	gone.snap.Pods = slices.DeleteFunc(slices.Clone(gone.snap.Pods), func(p *corev1.Pod) bool {
		return p.Namespace == "x" && p.Name == "b"
	})
	steps = append(steps, gone, e2eCases()[1], e2eCases()[0], gone)
	// Address ranges that split and merge back, and port ranges that
	// shrink, split, move and come back: each change deletes the old
	// elements whole before adding the new ones.
	whole := e2eScenario("ipblock-whole",
		withIngress(policy("x", "ipblock", sel("pod", "a"), ingressOnly),
			ingress(peers(ipBlock("10.240.0.0/16"), ipBlock("fd00:240::/64"), ipBlock("172.18.0.0/24")))))
	ports := func(name string, rules ...networkingv1.NetworkPolicyIngressRule) scenario {
		return e2eScenario(name,
			withIngress(policy("y", "range", sel("pod", "b"), ingressOnly),
				append(rules, ingress(peers(podPeer(sel())), numPort(udp, 81)))...))
	}
	fromX := peers(nsPeer(sel("ns", "x")))
	steps = append(steps, whole, e2eCases()[3], whole,
		ports("ports-80", ingress(fromX, numPort(tcp, 80))),
		ports("ports-80-82", ingress(fromX, rangePort(tcp, 80, 82))),
		ports("ports-split", ingress(fromX, rangePort(tcp, 80, 82)), ingress(peers(ipBlock("10.240.2.0/24")), numPort(tcp, 81))),
		ports("ports-moved", ingress(fromX, rangePort(tcp, 81, 83), numPort(udp, 80))),
		e2eCases()[2])
	for seed := range uint64(12) {
		steps = append(steps, randomScenario(seed))
	}
	return steps
}

// TestIncrementalMatchesFull applies a sequence of rulesets incrementally
// with one Applier and each whole with a fresh one: the kernel tables must
// be equal after every step, and the updates incremental.
func TestIncrementalMatchesFull(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	fresh, err := lab.AddHost("fresh")
	if err != nil {
		t.Fatal(err)
	}
	a := applierIn(t, lab.Node)
	for i, s := range sequence(t) {
		_, rs := s.compile(t)
		st := apply(t, a, rs)
		if i > 0 && st.Full {
			t.Errorf("step %d (%s): full replace, want incremental (%+v)", i, s.name, st)
		}
		apply(t, applierIn(t, fresh), rs)
		got, want := listTable(t, lab.Node, rs.Table), listTable(t, fresh, rs.Table)
		if !strings.Contains(want, `"chain"`) {
			t.Fatalf("step %d: listing has no chains: %s", i, want)
		}
		if got != want {
			t.Fatalf("step %d (%s): incremental table differs from a full apply (%+v):\n%s", i, s.name, st, lineDiff(want, got))
		}
	}
	// Nothing changed: nothing is sent.
	_, rs := sequence(t)[0].compile(t)
	apply(t, a, rs)
	if st := apply(t, a, rs); st.Messages != 0 || st.Full {
		t.Errorf("re-applying the same ruleset sent %d messages (full %v)", st.Messages, st.Full)
	}
}

// TestRefusedUpdateReplaces changes the table behind the Applier's back so
// that the kernel refuses the next incremental batch: the Applier then
// replaces the table whole in a second batch, and the kernel holds exactly
// the new ruleset.
func TestRefusedUpdateReplaces(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	fresh, err := lab.AddHost("fresh")
	if err != nil {
		t.Fatal(err)
	}
	_, before := e2eCases()[1].compile(t) // x/a accepts ns y on any port
	_, after := e2eCases()[0].compile(t)  // x/a accepts nothing
	a := applierIn(t, lab.Node)
	apply(t, a, before)
	if _, err := lab.Node.Run(context.Background(), "nft", "flush set inet podwall ingress/x/a/any4"); err != nil {
		t.Fatal(err)
	}
	if st := apply(t, a, after); !st.Full {
		t.Errorf("the update deleting elements someone else deleted was not refused: %+v", st)
	}
	apply(t, applierIn(t, fresh), after)
	if got, want := listTable(t, lab.Node, "podwall"), listTable(t, fresh, "podwall"); got != want {
		t.Errorf("table after the fallback differs from a fresh one:\n%s", lineDiff(want, got))
	}
}

// TestRestartAdopts checks that a new Applier (an agent restart) replaces
// whatever table it finds, including objects someone else added, in one
// batch, and that Delete removes it.
func TestRestartAdopts(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	fresh, err := lab.AddHost("fresh")
	if err != nil {
		t.Fatal(err)
	}
	_, first := e2eCases()[0].compile(t)
	_, second := e2eCases()[4].compile(t)
	apply(t, applierIn(t, lab.Node), first)
	if _, err := lab.Node.Run(context.Background(), "nft", "add chain inet podwall junk; add set inet podwall junkset { type ipv4_addr; }"); err != nil {
		t.Fatal(err)
	}
	restarted := applierIn(t, lab.Node)
	if st := apply(t, restarted, second); !st.Full {
		t.Errorf("first Apply of a new Applier was incremental: %+v", st)
	}
	apply(t, applierIn(t, fresh), second)
	if got, want := listTable(t, lab.Node, "podwall"), listTable(t, fresh, "podwall"); got != want {
		t.Errorf("adopted table differs from a fresh one:\n%s", lineDiff(want, got))
	}
	restarted.Forget()
	if st := apply(t, restarted, second); !st.Full {
		t.Errorf("Apply after Forget was incremental: %+v", st)
	}
	if err := restarted.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Delete(); err != nil {
		t.Errorf("deleting a missing table: %v", err)
	}
	out, err := lab.Node.Run(context.Background(), "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "podwall") {
		t.Errorf("table left after Delete:\n%s", out)
	}
}

// TestLargeBatch applies the benchmark cluster's node (110 local pods of
// 10,000, 1,000 policies) in one batch, then an incremental update, and
// checks the kernel took every element: google/nftables v0.3.0 sends the
// whole batch in one message and reads one answer per message, which needs
// the socket buffers the Applier forces.
func TestLargeBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("large batch: skipped in -short")
	}
	needNft(t)
	lab := netns.New(t)
	c := benchcluster.Large
	snap := c.Snapshot()
	e, err := policylib.Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	local := c.Local(110)
	rs, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := applierIn(t, lab.Node)
	st := apply(t, a, rs)
	t.Logf("full apply: %d messages, %d elements, %d chains, batch %v", st.Messages, st.ElementsAdded, st.ChainsAdded, st.Batch)
	if st.ElementsAdded < 10000 {
		t.Errorf("only %d elements: the benchmark cluster should need many more", st.ElementsAdded)
	}
	// Count what the kernel holds.
	out, err := lab.Node.Run(context.Background(), "nft", "-j", "list", "table", "inet", "podwall")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := countElems(t, out), countModelElems(rs); got != want {
		t.Errorf("kernel holds %d set elements, the ruleset has %d", got, want)
	}
	// One pod added elsewhere in the cluster.
	if err := e.SetPod(benchcluster.Extra()); err != nil {
		t.Fatal(err)
	}
	rs2, err := enforcer.Compile(e, local, enforcer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st = apply(t, a, rs2)
	t.Logf("update: %+v", st)
	if st.Full || st.ElementsAdded == 0 || st.ElementsAdded > 5000 {
		t.Errorf("update after adding one pod: %+v, want a small incremental batch", st)
	}
}

func countElems(t *testing.T, listing []byte) int {
	var doc struct {
		Nftables []map[string]struct {
			Elem []json.RawMessage `json:"elem"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(listing, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range doc.Nftables {
		for _, v := range o {
			n += len(v.Elem)
		}
	}
	return n
}

// countModelElems counts elements as nft lists them: one per address range
// (in the any-port sets and in each port range's peer sets), per port
// range (in the port maps) and per dispatch-map entry.
func countModelElems(rs *enforcer.Ruleset) int {
	n := 0
	for _, p := range rs.Pods {
		v4, v6 := false, false
		for _, a := range p.Addrs {
			v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		}
		for _, r := range []*enforcer.Rules{p.Ingress, p.Egress} {
			if r == nil {
				continue
			}
			for _, fam := range []bool{false, true} {
				if fam && !v6 || !fam && !v4 {
					continue
				}
				n += len(familyOf(r.Any.Ranges(), fam))
				for _, pr := range r.Ports {
					n += len(familyOf(pr.Peers.Ranges(), fam))
				}
			}
			n += len(r.Ports) // its port map's entries
			n += len(p.Addrs) // its dispatch-map entries
		}
	}
	return n
}

func familyOf(rs []addrset.Range, v6 bool) []addrset.Range {
	return slices.DeleteFunc(rs, func(r addrset.Range) bool { return r.From.Is6() != v6 })
}

// TestBigSet applies one set far larger than a netlink attribute can hold
// (its length field has 16 bits): the Applier splits the elements over
// several messages of the same batch.
func TestBigSet(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	snap := policylib.Snapshot{
		Pods: []*corev1.Pod{pod("n", "dst", labels("app", "dst"), []netip.Addr{netip.MustParseAddr("10.60.0.1")})},
		Policies: []*networkingv1.NetworkPolicy{withIngress(policy("n", "p", sel("app", "dst"), ingressOnly),
			ingress(peers(podPeer(sel("app", "peer"))), numPort(tcp, 80), numPort(udp, 53)))},
	}
	for i := range 3000 {
		// Every other address, so no two merge.
		a := netip.AddrFrom4([4]byte{10, 50, byte(i >> 7), byte(i<<1) & 0xfe})
		snap.Pods = append(snap.Pods, pod("n", fmt.Sprintf("peer-%d", i), labels("app", "peer"), []netip.Addr{a}))
	}
	e, err := policylib.Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := enforcer.Compile(e, []types.NamespacedName{{Namespace: "n", Name: "dst"}}, enforcer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The kernel keeps each peer range as a start and an end element; nft
	// lists the pair as one.
	st := apply(t, applierIn(t, lab.Node), rs)
	if st.ElementsAdded != 12003 {
		t.Errorf("added %d elements, want 12003 (3000 peers x 2 ports x start and end, 2 port-map entries, 1 dispatch entry)", st.ElementsAdded)
	}
	out, err := lab.Node.Run(context.Background(), "nft", "-j", "list", "table", "inet", "podwall")
	if err != nil {
		t.Fatal(err)
	}
	if got := countElems(t, out); got != 6003 {
		t.Errorf("kernel lists %d elements, want 6003", got)
	}
}

// TestRenameTable moves the rules to another table in one batch: the old
// table goes as the new one comes.
func TestRenameTable(t *testing.T) {
	needNft(t)
	lab := netns.New(t)
	s := e2eCases()[0]
	_, before := s.compile(t)
	s.opts.Table = "podwall-renamed"
	_, after := s.compile(t)
	a := applierIn(t, lab.Node)
	apply(t, a, before)
	if st := apply(t, a, after); !st.Full {
		t.Errorf("renaming the table was incremental: %+v", st)
	}
	out, err := lab.Node.Run(context.Background(), "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "table inet podwall-renamed" {
		t.Errorf("tables after renaming:\n%s", got)
	}
	if err := a.Delete(); err != nil {
		t.Fatal(err)
	}
}
