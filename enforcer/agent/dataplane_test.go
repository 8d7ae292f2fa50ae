package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// The dataplane tests run the agent on a watched manifest directory with
// its Applier in a lab's node namespace (internal/netns: root only, they
// skip otherwise) and check that real TCP and ICMP probes follow each
// change within a bounded time. Every pod of the seed runs on the node
// (k8s-node2, 192.168.2.102 on the bridge); k8s-master (192.168.2.100) is
// another host on the bridge, whose traffic crosses the forward hook.

const (
	probeTimeout = 200 * time.Millisecond
	followWithin = 5 * time.Second // a change must reach the kernel by then
)

type lab struct {
	lab    *netns.Lab
	hosts  map[string]*netns.NS // pod name, "master", "node"
	addrs  map[string]netip.Addr
	dir    string
	loads  *loads
	src    *agent.ManifestSource
	agent  *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// newLab builds the seed's pods in namespaces (TCP echo servers on 80
// everywhere) and a manifest directory with the cluster, every pod on
// k8s-node2, and starts the agent.
func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{lab: netns.New(t), hosts: map[string]*netns.NS{}, addrs: map[string]netip.Addr{}, dir: t.TempDir(), loads: newLoads()}
	node := netip.MustParseAddr("192.168.2.102")
	if err := l.lab.AddNodeAddrs(node); err != nil {
		t.Fatal(err)
	}
	l.hosts["node"], l.addrs["node"] = l.lab.Node, node
	set, err := manifest.Load(seed + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range set.Pods {
		a := netip.MustParseAddr(p.Status.PodIP)
		h, err := l.lab.AddHost(p.Name, a)
		if err != nil {
			t.Fatal(err)
		}
		l.hosts[p.Name], l.addrs[p.Name] = h, a
	}
	l.addrs["master"] = master
	if l.hosts["master"], err = l.lab.AddHost("master", master); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.hosts {
		if err := h.Serve([]int{80}, nil); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, seed+"/cluster/nodes.yaml", filepath.Join(l.dir, "nodes.yaml"))
	data, err := os.ReadFile(seed + "/cluster/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(l.dir, "workloads.yaml"), strings.ReplaceAll(string(data), "nodeName: k8s-node1", "nodeName: k8s-node2"))
	l.start(t)
	return l
}

// start runs an agent (a new one each time) on the lab's directory.
func (l *lab) start(t *testing.T) {
	t.Helper()
	fd, err := l.lab.Node.FD()
	if err != nil {
		t.Fatal(err)
	}
	l.src = &agent.ManifestSource{Paths: []string{l.dir}, Settle: 10 * time.Millisecond, OnLoad: l.loads.record}
	a, err := agent.New(agent.Options{
		NodeName: "k8s-node2",
		Debounce: 10 * time.Millisecond,
		Applier:  enforcer.NewApplier(enforcer.WithNetNS(fd)),
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.agent, l.cancel, l.done = a, cancel, make(chan error, 1)
	go func() { l.done <- a.Run(ctx, l.src) }()
	t.Cleanup(l.stop)
	ctx2, cancel2 := context.WithTimeout(context.Background(), followWithin)
	defer cancel2()
	if err := a.WaitApplied(ctx2, 0); err != nil {
		t.Fatal(err)
	}
}

func (l *lab) stop() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel = nil
	}
}

func (l *lab) drainLoads() {
	for len(l.loads.ch) > 0 {
		<-l.loads.ch
	}
}

// waitKernel waits for the watcher's next load and for the kernel to hold
// it, and returns the time since since.
func (l *lab) waitKernel(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	r := l.loads.next(t)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), followWithin)
	defer cancel()
	if err := l.agent.WaitApplied(ctx, r.Generation); err != nil {
		t.Fatal(err)
	}
	return time.Since(since)
}

type probe struct {
	from, to string
	icmp     bool
}

func (p probe) String() string {
	if p.icmp {
		return p.from + " -> " + p.to + " ICMP"
	}
	return p.from + " -> " + p.to + " TCP/80"
}

var probes = []probe{
	{"busybox", "httpd-1", false}, {"busybox", "httpd-1", true},
	{"busybox-access", "httpd-3", false}, {"busybox-access", "httpd-3", true},
	{"master", "httpd-2", false}, {"master", "httpd-2", true},
	{"node", "httpd-1", false},
}

// run makes one probe and reports whether it got through.
func (l *lab) run(p probe) (bool, error) {
	from, dst := l.hosts[p.from], l.addrs[p.to]
	var err error
	if p.icmp {
		err = from.ProbeICMP(dst, probeTimeout)
	} else {
		err = from.ProbeTCP(dst, 80, probeTimeout)
	}
	if err != nil && !netns.Reached(err) && !netns.Dropped(err) {
		return false, err
	}
	return netns.Reached(err), nil
}

// want is what a probe must show with the seed's stage policy file
// ("" for none): policylib's verdict, except that the node's own traffic
// reaches its pods (AllowHostToLocalPods, the default).
func want(t *testing.T, l *lab, policyFile string) map[probe]bool {
	t.Helper()
	paths := []string{seed + "/cluster"}
	if policyFile != "" {
		paths = append(paths, seed+"/original/"+policyFile)
	}
	set, err := manifest.Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policylib.Build(policylib.Snapshot{Nodes: set.Nodes, Pods: set.Pods, Policies: set.NetworkPolicies})
	if err != nil {
		t.Fatal(err)
	}
	out := map[probe]bool{}
	for _, p := range probes {
		if p.from == "node" {
			out[p] = true
			continue
		}
		f := policylib.Flow{From: policylib.AddrEndpoint(l.addrs[p.from]), To: policylib.AddrEndpoint(l.addrs[p.to]), Protocol: policylib.TCP, Port: 80}
		if p.icmp {
			f.Protocol = policylib.ICMP
		}
		d, err := e.Decide(f)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = d.Allowed
	}
	return out
}

// follow waits until every probe shows what is wanted, and returns how
// long that took from since.
func (l *lab) follow(t *testing.T, since time.Time, w map[probe]bool) time.Duration {
	t.Helper()
	for {
		var wrong []string
		for _, p := range probes {
			got, err := l.run(p)
			if err != nil {
				t.Fatalf("probe %s: %v", p, err)
			}
			if got != w[p] {
				wrong = append(wrong, fmt.Sprintf("%s: got through %v, want %v", p, got, w[p]))
			}
		}
		if len(wrong) == 0 {
			return time.Since(since)
		}
		if time.Since(since) > followWithin {
			t.Fatalf("probes did not follow within %v (status %+v):\n%s", followWithin, l.agent.Status(), strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hold checks that every probe keeps showing what is wanted for d.
func (l *lab) hold(t *testing.T, d time.Duration, w map[probe]bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, p := range probes {
			if got, err := l.run(p); err != nil || got != w[p] {
				t.Fatalf("%s: got through %v (err %v), want %v", p, got, err, w[p])
			}
		}
	}
}

// The seed's stages written into the watched directory one by one: real
// probes follow each within a bounded time, an established connection a
// change denies is cut, and a stopped agent leaves its rules in force for
// the next one to adopt.
func TestDataplaneStages(t *testing.T) {
	l := newLab(t)
	w0 := want(t, l, "")
	t.Logf("stage 0 enforced %v after the agent started", l.follow(t, time.Now(), w0))

	// A connection busybox -> httpd-1 that stage 1 denies.
	conn, err := l.hosts["busybox"].DialTCP(l.addrs["httpd-1"], 80, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := netns.Echo(conn, time.Second); err != nil {
		t.Fatal(err)
	}

	policy := filepath.Join(l.dir, "policy.yaml")
	for _, stage := range []string{"networkpolicy.yaml", "networkpolicy-ipblock.yaml", ""} {
		l.drainLoads()
		start := time.Now()
		if stage == "" {
			removeFile(t, policy)
		} else {
			copyFile(t, seed+"/original/"+stage, policy)
		}
		kernel := l.waitKernel(t, start)
		took := l.follow(t, start, want(t, l, stage))
		t.Logf("stage %q: in the kernel %v after the manifest change (watch, settle, reload, sync); probes agreed after %v",
			stage, kernel, took)
		if stage == "networkpolicy.yaml" {
			if err := netns.Echo(conn, 300*time.Millisecond); err == nil {
				t.Error("the established connection busybox -> httpd-1 survived the policy that denies it")
			}
		}
	}

	// Stopped, the agent leaves the table: stage 1 stays enforced, and a
	// new agent adopts it.
	copyFile(t, seed+"/original/networkpolicy.yaml", policy)
	w1 := want(t, l, "networkpolicy.yaml")
	l.follow(t, time.Now(), w1)
	l.stop()
	l.hold(t, 300*time.Millisecond, w1)
	l.start(t)
	l.hold(t, 300*time.Millisecond, w1)
}

// An invalid policy file is reported; the rest stays enforced. (Its
// stand-in isolates the busybox pods' ingress, which no probe here
// reaches: TestInvalidPolicyReported checks it.)
func TestDataplaneInvalidPolicy(t *testing.T) {
	l := newLab(t)
	copyFile(t, seed+"/original/networkpolicy.yaml", filepath.Join(l.dir, "policy.yaml"))
	writeFile(t, filepath.Join(l.dir, "bad.yaml"), badPolicy("10.0.0.0/33"))
	l.follow(t, time.Now(), want(t, l, "networkpolicy.yaml"))
	rej := l.agent.Status().Rejected
	if len(rej) != 1 || !strings.Contains(fmt.Sprint(rej), "deny-busybox") {
		t.Errorf("rejected %v, want default/deny-busybox", rej)
	}
}

// A manifest that stops loading keeps the last good state in the kernel.
func TestDataplaneBadYAMLKeepsState(t *testing.T) {
	l := newLab(t)
	policy := filepath.Join(l.dir, "policy.yaml")
	copyFile(t, seed+"/original/networkpolicy.yaml", policy)
	w1 := want(t, l, "networkpolicy.yaml")
	l.follow(t, time.Now(), w1)
	l.drainLoads()
	// Malformed YAML, and busybox-access loses its label: neither may
	// reach the kernel.
	writeFile(t, policy, "kind: NetworkPolicy\nmetadata: [\n")
	data, err := os.ReadFile(filepath.Join(l.dir, "workloads.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(l.dir, "workloads.yaml"), strings.Replace(string(data), `access: "true"`, `access: "no"`, 1))
	for {
		if r := l.loads.next(t); r.Err != nil {
			t.Logf("reported: %v", r.Err)
			break
		}
	}
	l.hold(t, 300*time.Millisecond, w1)
}
