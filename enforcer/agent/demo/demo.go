// Package demo builds the seed scenario in network namespaces on this
// machine, enforces it with the podwall agent and compares what real
// connections do with what policylib predicts.
//
// The layout (internal/netns): one node namespace holds a bridge and the
// three node addresses of the seed (192.168.2.100-102) on it; each pod
// (httpd-1..3 serving HTTP on port 80, busybox, busybox-access) and a
// client outside the cluster (192.168.2.50) is a namespace attached to the
// bridge. All pods run on this one node. Pod-to-pod and client-to-pod
// traffic is bridged and crosses the node namespace's forward hook; the
// node's own traffic to the pods leaves through its output hook, which the
// agent fills with the pods' ingress rules because the demo sets
// AllowHostToLocalPods to false (the seed's walkthrough shows the nodes
// denied in stage 1). The agent runs in the process, with its Applier in
// the node namespace and a ManifestSource on a temporary directory where
// the demo writes each stage's manifests.
//
// Nothing leaves the namespaces the demo creates: the node namespace has no
// uplink. Every probe is bounded (one HTTP GET or one ICMP echo with a
// timeout, a fixed number per stage), and everything is removed when the
// demo ends, whether it succeeded, failed or was interrupted.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/internal/netns"
	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// ErrUnavailable is wrapped by the error Run returns when this machine
// cannot build network namespaces (not root, no ip tool, no br_netfilter).
var ErrUnavailable = errors.New("cannot build network namespaces here")

// DefaultProbeTimeout bounds each probe.
const DefaultProbeTimeout = 300 * time.Millisecond

// Options configure Run.
type Options struct {
	// Seed is the seed scenario's directory, holding cluster/ and
	// original/ (examples/seed in the repository). Required.
	Seed string
	// ProbeTimeout bounds each probe; a dropped probe waits this long, and
	// a probe that disagrees with the prediction is repeated once with
	// three times as long. Default 300ms.
	ProbeTimeout time.Duration
	// Out receives the tables, stage by stage. Default io.Discard.
	Out io.Writer
	// Logger receives the agent's logs. Default none.
	Logger logr.Logger
}

// Node is the node every pod runs on in the demo.
const Node = "k8s-node2"

// client is an address outside the cluster, on the node network.
var client = netip.MustParseAddr("192.168.2.50")

// Stage is one stage of the seed scenario, run.
type Stage struct {
	Name   string // stage0, stage1, stage2
	Title  string
	Policy string // the policy file applied, "" for none
	// ChangeToKernel is the time from the manifest change to the kernel
	// holding it (the reload, the sync and the nftables batch).
	ChangeToKernel time.Duration
	Sync           agent.SyncReport
	Flows          []Flow
}

// Flow is one probe and its verdicts.
type Flow struct {
	From, To string
	Traffic  string // "HTTP :80" or "ICMP"
	// Observed is what the real connection did ("allowed", "denied" or
	// "error: ..."), Predicted what policylib's Decide says.
	Observed, Predicted string
}

// Agrees reports whether the kernel did what policylib predicts.
func (f Flow) Agrees() bool { return f.Observed == f.Predicted }

// Result is the demo's outcome.
type Result struct {
	Stages []Stage
	// Probes and Disagreements count every stage's flows.
	Probes, Disagreements int
}

type stageDef struct{ name, file, title string }

var stageDefs = []stageDef{
	{"stage0", "", "no NetworkPolicy"},
	{"stage1", "networkpolicy.yaml", "networkpolicy.yaml: to the httpd pods, only access=true pods on TCP 80"},
	{"stage2", "networkpolicy-ipblock.yaml", "networkpolicy-ipblock.yaml: the same plus ipBlock 192.168.2.0/24 (the node network)"},
}

// endpoint is a probe source or destination.
type endpoint struct {
	label string
	addr  netip.Addr
	ns    *netns.NS
	ep    policylib.Endpoint // for Decide
}

// Run runs the demo: it builds the lab, starts the agent and walks the
// stages, writing a table per stage to o.Out. It returns an error when the
// demo could not run; disagreements are counted in the Result.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.Seed == "" {
		return nil, errors.New("demo: no seed directory")
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	seedSet, err := manifest.Load(filepath.Join(o.Seed, "cluster"))
	if err != nil {
		return nil, fmt.Errorf("demo: seed cluster: %w", err)
	}
	seedPods, err := seedSet.AllPods()
	if err != nil {
		return nil, fmt.Errorf("demo: seed cluster: %w", err)
	}
	for _, st := range stageDefs {
		if st.file != "" {
			if _, err := os.Stat(filepath.Join(o.Seed, "original", st.file)); err != nil {
				return nil, fmt.Errorf("demo: seed: %w", err)
			}
		}
	}

	lab, closeLab, err := newLab()
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer func() { err = errors.Join(err, closeLab()) }()
	dir, err := os.MkdirTemp("", "podwall-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The lab: node addresses on the bridge, a namespace per pod and one
	// for the client, HTTP servers in the httpd pods.
	var nodeAddrs []netip.Addr
	var sources, targets []endpoint
	for _, n := range seedSet.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				addr, err := netip.ParseAddr(a.Address)
				if err != nil {
					return nil, fmt.Errorf("demo: node %s: %w", n.Name, err)
				}
				nodeAddrs = append(nodeAddrs, addr)
				sources = append(sources, endpoint{label: "node " + n.Name, addr: addr, ns: lab.Node, ep: policylib.NodeEndpoint(n.Name)})
			}
		}
	}
	if err := lab.AddNodeAddrs(nodeAddrs...); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	var podSources []endpoint
	for _, p := range seedPods {
		addr, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil {
			return nil, fmt.Errorf("demo: pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		ns, err := lab.AddHost(p.Name, addr)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		e := endpoint{label: p.Namespace + "/" + p.Name, addr: addr, ns: ns, ep: policylib.PodEndpoint(p.Namespace, p.Name)}
		if servesHTTP(p) {
			srv, err := serveHTTP(ns, p.Name)
			if err != nil {
				return nil, fmt.Errorf("demo: HTTP server in %s: %w", p.Name, err)
			}
			servers = append(servers, srv)
			targets = append(targets, e)
		} else {
			podSources = append(podSources, e)
		}
	}
	clientNS, err := lab.AddHost("client", client)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	sources = append(podSources, sources...)
	sources = append(sources, endpoint{label: "client " + client.String(), addr: client, ns: clientNS, ep: policylib.AddrEndpoint(client)})

	// The agent, on a directory of manifests: the seed's nodes and pods,
	// every pod on Node.
	if err := writeCluster(filepath.Join(dir, "cluster.yaml"), seedSet.Nodes, seedPods); err != nil {
		return nil, err
	}
	fd, err := lab.Node.FD()
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	var lastSync atomic.Pointer[agent.SyncReport]
	a, err := agent.New(agent.Options{
		NodeName:             Node,
		AllowHostToLocalPods: enforcer.Bool(false),
		NodeAddrs:            nodeAddrs,
		Debounce:             10 * time.Millisecond,
		ResyncPeriod:         -1,
		Applier:              enforcer.NewApplier(enforcer.WithNetNS(fd)),
		Logger:               o.Logger,
		OnSync:               func(r agent.SyncReport) { lastSync.Store(&r) },
	})
	if err != nil {
		return nil, err
	}
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 10 * time.Millisecond}
	actx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(actx, src) }()
	defer func() {
		stop()
		if rerr := <-runErr; rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()

	// The first sync: the cluster without policies.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = a.WaitApplied(wctx, 0)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("demo: the agent's first sync: %w", err)
	}

	w := o.Out
	fmt.Fprintf(w, "podwall demo: the seed scenario in network namespaces, enforced by the podwall agent\n")
	fmt.Fprintf(w, "  node namespace %s: bridge %s; node addresses %s on the bridge\n", lab.Node.Name, lab.Bridge, joinAddrs(nodeAddrs))
	var podDesc []string
	for _, p := range seedPods {
		podDesc = append(podDesc, p.Name+" "+p.Status.PodIP)
	}
	fmt.Fprintf(w, "  pods, all on node %s: %s; HTTP servers on :80 in the httpd pods\n", Node, strings.Join(podDesc, ", "))
	fmt.Fprintf(w, "  client outside the cluster: %s\n", client)
	fmt.Fprintf(w, "  the node's own traffic is judged by the pods' ingress rules (AllowHostToLocalPods=false)\n")
	fmt.Fprintf(w, "  each flow: the verdict of a real connection (kernel) / the verdict policylib.Decide predicts\n")

	res = &Result{}
	for _, def := range stageDefs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		st, err := runStage(ctx, o, def, dir, a, src, seedSet, seedPods, sources, targets)
		if err != nil {
			return res, err
		}
		if r := lastSync.Load(); r != nil {
			st.Sync = *r
		}
		res.Stages = append(res.Stages, *st)
		for _, f := range st.Flows {
			res.Probes++
			if !f.Agrees() {
				res.Disagreements++
			}
		}
		printStage(w, st)
	}
	if res.Disagreements == 0 {
		fmt.Fprintf(w, "\nall %d probes agree with policylib\n", res.Probes)
	} else {
		fmt.Fprintf(w, "\n%d of %d probes DISAGREE with policylib\n", res.Disagreements, res.Probes)
	}
	return res, nil
}

// runStage writes the stage's manifests, waits for the kernel to hold
// them and probes every flow.
func runStage(ctx context.Context, o Options, def stageDef, dir string, a *agent.Agent, src *agent.ManifestSource,
	seedSet *manifest.Set, seedPods []*corev1.Pod, sources, targets []endpoint) (*Stage, error) {
	st := &Stage{Name: def.name, Title: def.title, Policy: def.file}
	policyPath := filepath.Join(dir, "policy.yaml")
	start := time.Now()
	if def.file == "" {
		if err := os.Remove(policyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	} else {
		data, err := os.ReadFile(filepath.Join(o.Seed, "original", def.file))
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(policyPath, data); err != nil {
			return nil, err
		}
	}
	// The watcher notices the change too; reloading here makes the wait
	// exact whichever comes first.
	lr := src.Reload()
	if lr.Err != nil {
		return nil, fmt.Errorf("demo: %s: %w", def.name, lr.Err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.WaitApplied(wctx, lr.Generation)
	cancel()
	if err != nil {
		if ls := a.Status().LastSync; ls != nil && ls.Err != nil {
			err = fmt.Errorf("%w (last sync: %v)", err, ls.Err)
		}
		return nil, fmt.Errorf("demo: %s: %w", def.name, err)
	}
	st.ChangeToKernel = time.Since(start)

	// The prediction: an engine of its own, from the seed's files.
	snap := policylib.Snapshot{Nodes: seedSet.Nodes, Pods: seedPods}
	if def.file != "" {
		ps, err := manifest.Load(filepath.Join(o.Seed, "original", def.file))
		if err != nil {
			return nil, err
		}
		snap.Policies = ps.NetworkPolicies
	}
	eng, err := policylib.Build(snap)
	if err != nil {
		return nil, fmt.Errorf("demo: %s: %w", def.name, err)
	}

	type job struct {
		i        int
		from, to endpoint
		icmp     bool
	}
	var jobs []job
	for _, from := range sources {
		for _, to := range targets {
			for _, icmpProbe := range []bool{false, true} {
				jobs = append(jobs, job{len(jobs), from, to, icmpProbe})
			}
		}
	}
	st.Flows = make([]Flow, len(jobs))
	for _, j := range jobs {
		f := policylib.Flow{From: j.from.ep, To: j.to.ep, Protocol: policylib.TCP, Port: 80}
		traffic := "HTTP :80"
		if j.icmp {
			f.Protocol, f.Port, traffic = policylib.ICMP, 0, "ICMP"
		}
		d, err := eng.Decide(f)
		if err != nil {
			return nil, fmt.Errorf("demo: deciding %s: %w", f, err)
		}
		st.Flows[j.i] = Flow{From: j.from.label, To: j.to.label, Traffic: traffic, Predicted: verdictWord(d.Allowed)}
	}
	probe := func(j job, timeout time.Duration) string {
		if j.icmp {
			return observed(probeICMP(j.from.ns, j.from.addr, j.to.addr, timeout))
		}
		return observed(probeHTTP(ctx, j.from.ns, j.from.addr, j.to.addr, timeout))
	}
	var wg sync.WaitGroup
	work := make(chan job)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				got := probe(j, o.ProbeTimeout)
				if got != st.Flows[j.i].Predicted && ctx.Err() == nil {
					got = probe(j, 3*o.ProbeTimeout) // confirm a surprise
				}
				st.Flows[j.i].Observed = got
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return st, nil
}

func verdictWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// observed names what a probe's error says happened.
func observed(err error) string {
	switch {
	case err == nil:
		return "allowed"
	case netns.Dropped(err):
		return "denied"
	}
	return "error: " + err.Error()
}

func printStage(w io.Writer, st *Stage) {
	fmt.Fprintf(w, "\n== %s: %s\n", st.Name, st.Title)
	s := st.Sync
	fmt.Fprintf(w, "   in the kernel %v after the manifest change (compile %v, apply %v; %d chains, %d set elements)\n",
		st.ChangeToKernel.Round(time.Millisecond), s.Compile.Round(10*time.Microsecond), s.Apply.Round(10*time.Microsecond),
		s.Size.Chains, s.Size.Elements)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tHTTP :80 kernel / policylib\tICMP kernel / policylib\t")
	type row struct{ from, to string }
	cells := map[row][2]Flow{}
	var order []row
	for _, f := range st.Flows {
		r := row{f.From, f.To}
		c, seen := cells[r]
		if !seen {
			order = append(order, r)
		}
		if f.Traffic == "ICMP" {
			c[1] = f
		} else {
			c[0] = f
		}
		cells[r] = c
	}
	for _, r := range order {
		c := cells[r]
		mark := ""
		if !c[0].Agrees() || !c[1].Agrees() {
			mark = "<- DISAGREE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s / %s\t%s / %s\t%s\n", r.from, r.to,
			c[0].Observed, c[0].Predicted, c[1].Observed, c[1].Predicted, mark)
	}
	tw.Flush()
}

func servesHTTP(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == 80 {
				return true
			}
		}
	}
	return false
}

// serveHTTP starts an HTTP server on port 80 of every address of ns.
func serveHTTP(ns *netns.NS, name string) (*http.Server, error) {
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":80")
		return err
	}); err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "It works! ("+name+")\n")
		}),
		ReadHeaderTimeout: 2 * time.Second,
	}
	go srv.Serve(ln)
	return srv, nil
}

// probeHTTP makes one GET http://dst:80/ from ns, from address src, within
// timeout.
func probeHTTP(ctx context.Context, ns *netns.NS, src, dst netip.Addr, timeout time.Duration) error {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = dialer.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+netip.AddrPortFrom(dst, 80).String()+"/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return os.ErrDeadlineExceeded
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "It works!") {
		return fmt.Errorf("GET %s: %s %q", req.URL, resp.Status, body)
	}
	return nil
}

var icmpSeq atomic.Uint32

// probeICMP sends one ICMP echo request from ns, from address src, to dst
// and waits up to timeout for the reply.
func probeICMP(ns *netns.NS, src, dst netip.Addr, timeout time.Duration) error {
	var pc *icmp.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = icmp.ListenPacket("ip4:icmp", src.String())
		return err
	}); err != nil {
		return err
	}
	defer pc.Close()
	id := int(icmpSeq.Add(1)&0x7fff) | 0x8000 // apart from the harness's ids
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("podwall demo")}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	pc.SetDeadline(time.Now().Add(timeout))
	if _, err := pc.WriteTo(wire, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
			return nil
		}
	}
}

// writeCluster writes the seed's nodes and pods, every pod moved to Node.
func writeCluster(path string, nodes []*corev1.Node, pods []*corev1.Pod) error {
	var b strings.Builder
	b.WriteString("# The seed cluster with every pod on " + Node + ", written by podwall demo.\n")
	doc := func(kind string, obj any) error {
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		b.WriteString("---\napiVersion: v1\nkind: " + kind + "\n")
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if strings.HasPrefix(line, "apiVersion:") || strings.HasPrefix(line, "kind:") {
				continue
			}
			b.WriteString(line)
		}
		return nil
	}
	for _, n := range nodes {
		if err := doc("Node", n); err != nil {
			return err
		}
	}
	for _, p := range pods {
		q := p.DeepCopy()
		q.Spec.NodeName = Node
		if err := doc("Pod", q); err != nil {
			return err
		}
	}
	return writeAtomic(path, []byte(b.String()))
}

// writeAtomic writes through a hidden temporary file and a rename, so the
// watching agent never reads half a file.
func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
