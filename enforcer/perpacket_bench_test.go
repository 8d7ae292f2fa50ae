package enforcer_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/internal/benchcluster"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/policylib"
)

// The per-packet benchmark: new TCP connections per second between two pod
// namespaces bridged by a node namespace, with no table, with conntrack
// only, and with the table of a node of the benchmark cluster
// (internal/benchcluster) with 0, 10 and 1,000 policies. The issue's
// target: with 1,000 policies, within 10% of the rate with no enforcer,
// because the per-packet work (verdict map, per-pod chain, port map, peer
// set) does not depend on the number of policies.

var perPacketClients = flag.Int("perpacket.clients", 2, "BenchmarkNewConnections: client threads opening connections at once")

// The client and server are pods of the benchmark cluster in ns-4: an
// egress-isolating namespace (the policies of ns-4 all have egress rules,
// as 4 % 4 == 0) in env=prod. pod-0 is app-0, tier web; pod-20 is app-0,
// tier db. policy-4 selects app-0 in ns-4 in every cluster with 5 or more
// policies: the server's ingress allows tier web of ns-4 on the named port
// http (8080), so a SYN from the client goes egress4 -> the client's
// egress chain -> its any-port set (env=prod namespaces), then ingress4 ->
// the server's ingress chain -> its port map (tcp . 8080) -> the port
// chain -> its peer set.
var (
	ppClient = types.NamespacedName{Namespace: "ns-4", Name: "pod-0"}
	ppServer = types.NamespacedName{Namespace: "ns-4", Name: "pod-20"}
)

const (
	ppPort       = 8080 // allowed: the pods' named port http
	ppDeniedPort = 7000 // denied by the server's ingress rules
	// ppSlice is how many connections one variant makes in a round of the
	// interleaved sub-benchmark (about 50 ms).
	ppSlice = 1000
)

// ppLab is one variant: its own lab (node namespace, client and server
// pods) with its table, or none.
type ppLab struct {
	name     string
	short    string            // in the interleaved benchmark's metrics
	rs       *enforcer.Ruleset // nil: no podwall table
	enforced bool              // the client and server are isolated
	lab      *netns.Lab
	dialers  *dialers
}

// BenchmarkNewConnections opens and closes TCP connections from a client
// pod namespace to a server pod namespace through the node namespace's
// bridge and inet forward hook, as fast as -perpacket.clients threads can:
// connect, read the one byte the server writes, read its FIN, close.
//
// Every variant has a lab of its own, built and loaded once:
//
//   - none: no table in the node namespace, so no conntrack either;
//   - conntrack: a table whose forward chain only accepts established
//     traffic, which turns conntrack on as kube-proxy does on a real node
//     (needs the nft tool);
//   - policies=N: podwall's table for a node of the benchmark cluster (110
//     local pods, the client and server among them) with N = 0, 10 and
//     1,000 policies. With 0 nothing is isolated: conntrack and the base
//     chain's lookups in empty verdict maps.
//
// A sub-benchmark per variant measures it alone (conn/s, and the process's
// CPU time per connection). The interleaved sub-benchmark measures them
// all under the same conditions, for a machine shared with other work:
// rounds of ppSlice connections per variant, in an order that rotates each
// round, and for each variant the median over the rounds of its rate over
// none's in the same round (p1000/none is the ratio), and the same
// for the CPU time per connection (cpu:p1000/none, none's over the
// variant's); and, the same way, 1,000 policies over conntrack alone
// (p1000/ct) and over 10 policies (p1000/p10). b.N counts connections per
// variant there, so its ns/op is the time of a connection of every variant
// together.
func BenchmarkNewConnections(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("BenchmarkNewConnections needs root: it builds network namespaces and loads nftables tables")
	}
	if err := netns.Available(); err != nil {
		b.Skip(err)
	}
	clients := max(*perPacketClients, 1)
	labs := []*ppLab{newPPLab(b, "none", "none", -1, clients)}
	if _, err := exec.LookPath("nft"); err == nil {
		labs = append(labs, newPPLab(b, "conntrack", "ct", -1, clients))
	} else {
		b.Log("no nft tool: no conntrack variant")
	}
	for _, policies := range []int{0, 10, benchcluster.Large.Policies} {
		labs = append(labs, newPPLab(b, fmt.Sprintf("policies=%d", policies), fmt.Sprintf("p%d", policies), policies, clients))
	}
	for _, l := range labs {
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			c := l.run(b, b.N)
			b.ReportMetric(float64(b.N)/c.wall.Seconds(), "conn/s")
			b.ReportMetric(float64(c.cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/conn")
		})
	}
	// The interleaved sub-benchmark's ratios: every variant to none (on
	// wall and CPU time), and 1,000 policies to conntrack alone (what
	// podwall adds on a node where kube-proxy runs) and to 10 policies
	// (whether dispatch grows with policies).
	type pair struct {
		unit   string
		v, ref int // indexes in labs
		cpu    bool
	}
	index := func(short string) int {
		return slices.IndexFunc(labs, func(l *ppLab) bool { return l.short == short })
	}
	var pairs []pair
	for i, l := range labs[1:] {
		pairs = append(pairs, pair{l.short + "/none", i + 1, 0, false}, pair{"cpu:" + l.short + "/none", i + 1, 0, true})
	}
	for _, ref := range []string{"ct", "p10"} {
		if r := index(ref); r >= 0 {
			pairs = append(pairs, pair{"p1000/" + ref, index("p1000"), r, false})
		}
	}
	b.Run("interleaved", func(b *testing.B) {
		b.ReportAllocs()
		ratios := make([][]float64, len(pairs)) // per pair, per round
		costs := make([]ppCost, len(labs))
		for done, round := 0, 0; done < b.N; round++ {
			k := min(ppSlice, b.N-done)
			done += k
			for j := range labs {
				i := (round + j) % len(labs)
				costs[i] = labs[i].run(b, k)
			}
			for i, p := range pairs {
				// The variant's rate over the reference's, or the
				// reference's CPU time per connection over the variant's.
				v, ref := costs[p.v].wall, costs[p.ref].wall
				if p.cpu {
					v, ref = costs[p.v].cpu, costs[p.ref].cpu
				}
				ratios[i] = append(ratios[i], ref.Seconds()/v.Seconds())
			}
		}
		for i, p := range pairs {
			b.ReportMetric(median(ratios[i]), p.unit)
		}
	})
}

// ppCost is what connections took: wall time, and the process's CPU time
// (user and system, which holds the softirq work of the packets its
// threads send, as long as the kernel does not account interrupt time
// apart: CONFIG_IRQ_TIME_ACCOUNTING unset).
type ppCost struct{ wall, cpu time.Duration }

// run makes n connections in the lab.
func (l *ppLab) run(b *testing.B, n int) ppCost {
	cpu0 := processCPU(b)
	start := time.Now()
	if err := l.dialers.run(n); err != nil {
		b.Fatalf("%s: %v", l.name, err)
	}
	return ppCost{wall: time.Since(start), cpu: processCPU(b) - cpu0}
}

func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newPPLab builds a variant's lab: for policies >= 0, podwall's table for
// the benchmark cluster with that many policies; otherwise no podwall
// table, and for the variant named conntrack a one-rule table that turns
// conntrack on.
func newPPLab(b testing.TB, name, short string, policies, clients int) *ppLab {
	b.Helper()
	c := benchcluster.Large
	c.Policies = max(policies, 0)
	snap := c.Snapshot()
	client, server := podAddr(b, snap, ppClient), podAddr(b, snap, ppServer)
	l := &ppLab{name: name, short: short, enforced: policies > 0}
	if policies >= 0 {
		e, err := policylib.Build(snap)
		if err != nil {
			b.Fatal(err)
		}
		local := slices.DeleteFunc(c.Local(110), func(n types.NamespacedName) bool { return n == ppClient || n == ppServer })
		local = append(local[:108], ppClient, ppServer)
		if l.rs, err = enforcer.Compile(e, local, enforcer.Options{}); err != nil {
			b.Fatal(err)
		}
		checkPerPacketRuleset(b, l.rs, client, server, l.enforced)
	}
	lab := netns.New(b)
	l.lab = lab
	cns, err := lab.AddHost("client", client)
	if err != nil {
		b.Fatal(err)
	}
	sns, err := lab.AddHost("server", server)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := startOneByteServer(sns, server, ppPort, 2)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.stop)
	if l.dialers, err = startDialers(cns, server, ppPort, clients); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.dialers.stop)
	switch {
	case l.rs != nil:
		apply(b, applierIn(b, lab.Node, enforcer.WithConntrackCleanup(false)), l.rs)
	case name == "conntrack":
		if _, err := lab.Node.Run(context.Background(), "nft", "add table inet ctonly; "+
			"add chain inet ctonly forward { type filter hook forward priority filter; policy accept; }; "+
			"add rule inet ctonly forward ct state established,related accept"); err != nil {
			b.Fatal(err)
		}
	}
	// The kernel does what the variant says: the allowed port answers, the
	// denied port is dropped when the pods are isolated, refused otherwise.
	if err := cns.ProbeTCP(server, ppPort, 2*time.Second); err != nil {
		b.Fatalf("%s: the allowed connection fails: %v", name, err)
	}
	err = cns.ProbeTCP(server, ppDeniedPort, 300*time.Millisecond)
	if l.enforced && !netns.Dropped(err) || !l.enforced && !netns.Reached(err) {
		b.Fatalf("%s: a connection to the denied port: %v (isolated: %v)", name, err, l.enforced)
	}
	// Conntrack runs in the node namespace exactly when there is a table.
	var count []byte
	if err := lab.Node.Do(func() error {
		count, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		return err
	}); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.Fatal(err)
	}
	if tracked := len(count) > 0 && string(count) != "0\n"; tracked != (name != "none") {
		b.Fatalf("%s: conntrack entries in the node namespace: %q", name, count)
	}
	return l
}

// checkPerPacketRuleset checks that the flow the benchmark makes is allowed
// and, when enforced, goes through the whole dispatch: both pods isolated,
// the server's ingress through its port map.
func checkPerPacketRuleset(b testing.TB, rs *enforcer.Ruleset, client, server netip.Addr, enforced bool) {
	b.Helper()
	if !rs.Allowed(client, server, policylib.TCP, ppPort) {
		b.Fatalf("the ruleset denies %s -> %s tcp/%d", client, server, ppPort)
	}
	if rs.Allowed(client, server, policylib.TCP, ppDeniedPort) == enforced {
		b.Fatalf("the ruleset allows %s -> %s tcp/%d: %v, want %v", client, server, ppDeniedPort, enforced, !enforced)
	}
	c, okc := rs.Pod(client)
	s, oks := rs.Pod(server)
	if !enforced {
		return
	}
	if !okc || !oks || c.Egress == nil || s.Ingress == nil {
		b.Fatal("the client's egress or the server's ingress is not isolated")
	}
	if s.Ingress.Any.Contains(client) || !slices.ContainsFunc(s.Ingress.Ports, func(p enforcer.PortRule) bool {
		return p.Protocol == policylib.TCP && p.First <= ppPort && ppPort <= p.Last && p.Peers.Contains(client)
	}) {
		b.Fatal("the server's ingress does not allow the client through its port map")
	}
}

func podAddr(b testing.TB, snap policylib.Snapshot, n types.NamespacedName) netip.Addr {
	for _, p := range snap.Pods {
		if p.Namespace == n.Namespace && p.Name == n.Name {
			return netip.MustParseAddr(p.Status.PodIP)
		}
	}
	b.Fatalf("no pod %s in the benchmark cluster", n)
	return netip.Addr{}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
