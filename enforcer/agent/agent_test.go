package agent_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podwall/podwall/enforcer"
	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/policylib"
)

func TestOptionsValidate(t *testing.T) {
	if err := (agent.Options{NodeName: "n"}).Validate(); err != nil {
		t.Errorf("minimal options: %v", err)
	}
	err := (agent.Options{Table: "1bad name", Debounce: -time.Second, MaxDelay: time.Millisecond, RetryMin: 2 * time.Second, RetryMax: time.Second}).Validate()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{"NodeName", "Debounce", "RetryMin", "able"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := agent.New(agent.Options{}); err == nil {
		t.Error("New without a node name succeeded")
	}
}

// The manifest source walks the seed's stages: the agent applies the local
// pods' rules of each (node k8s-node2: httpd-1, httpd-3, busybox-access).
func TestManifestStages(t *testing.T) {
	dir := seedDir(t)
	ld := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: ld.record}
	s := start(t, agent.Options{}, src)
	if r := ld.next(t); r.Err != nil || r.Objects != 8 {
		t.Fatalf("first load: %+v", r)
	}
	s.waitGen(t, 0)
	rs := s.app.last()
	if rs == nil || len(rs.Pods) != 3 || len(rs.NodeAddrs) != 1 || rs.NodeAddrs[0] != netip.MustParseAddr("192.168.2.102") {
		t.Fatalf("stage 0 ruleset: %+v", rs)
	}
	if !allowed(rs, busybox, httpd1, policylib.TCP, 80) {
		t.Error("stage 0: busybox -> httpd-1 denied")
	}

	policy := filepath.Join(dir, "policy.yaml")
	copyFile(t, filepath.Join(seed, "original", "networkpolicy.yaml"), policy)
	r := ld.next(t)
	if r.Err != nil || r.Changed != 1 {
		t.Fatalf("stage 1 load: %+v", r)
	}
	s.waitGen(t, r.Generation)
	rs = s.app.last()
	for _, c := range []struct {
		src, dst netip.Addr
		proto    policylib.Protocol
		want     bool
	}{
		{busybox, httpd1, policylib.TCP, false},
		{busybox, httpd1, policylib.ICMP, false},
		{busyboxAccess, httpd1, policylib.TCP, true},
		{busyboxAccess, httpd3, policylib.ICMP, false},
		{master, httpd3, policylib.TCP, false},
	} {
		if got := allowed(rs, c.src, c.dst, c.proto, 80); got != c.want {
			t.Errorf("stage 1: %s -> %s %s: allowed %v, want %v", c.src, c.dst, c.proto, got, c.want)
		}
	}

	copyFile(t, filepath.Join(seed, "original", "networkpolicy-ipblock.yaml"), policy)
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	rs = s.app.last()
	if !allowed(rs, master, httpd3, policylib.TCP, 80) || allowed(rs, busybox, httpd3, policylib.TCP, 80) {
		t.Error("stage 2: want node allowed, busybox denied")
	}

	removeFile(t, policy)
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	if rs = s.app.last(); !allowed(rs, busybox, httpd1, policylib.TCP, 80) {
		t.Error("policy removed: busybox -> httpd-1 still denied")
	}
	// Metrics follow the sync just after the kernel has it.
	eventually(t, 5*time.Second, "syncs_total >= 4 and 3 latency samples", func() bool {
		return s.metric(t, "podwall_enforcer_syncs_total") >= 4 && s.metric(t, "podwall_enforcer_change_to_kernel_seconds") >= 3
	})
}

// A policy policylib rejects is reported, and, having no earlier valid
// version, stands in isolating the pods it selects with nothing allowed
// (never fail open); the others stay in force. Fixing it brings it in; a
// broken update keeps the fixed version.
func TestInvalidPolicyReported(t *testing.T) {
	dir := seedDir(t)
	copyFile(t, filepath.Join(seed, "original", "networkpolicy.yaml"), filepath.Join(dir, "policy.yaml"))
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, badPolicy("10.0.0.0/33"))
	ld := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: ld.record}
	s := start(t, agent.Options{}, src)
	r := ld.next(t)
	if r.Err != nil {
		t.Fatalf("load: %v", r.Err)
	}
	s.waitGen(t, r.Generation)
	st := s.a.Status()
	key := types.NamespacedName{Namespace: "default", Name: "deny-busybox"}
	if msg, ok := st.Rejected[key]; !ok || !strings.Contains(msg, "cidr") {
		t.Fatalf("rejected %v, want %s with its reason", st.Rejected, key)
	}
	if got := s.metric(t, "podwall_enforcer_rejected_policies"); got != 1 {
		t.Errorf("rejected_policies %v, want 1", got)
	}
	rs := s.app.last()
	if allowed(rs, busybox, httpd1, policylib.TCP, 80) || !allowed(rs, busyboxAccess, httpd1, policylib.TCP, 80) {
		t.Error("the valid policy is not enforced")
	}
	if p, ok := rs.Pod(busyboxAccess); !ok || p.Ingress == nil || allowed(rs, httpd1, busyboxAccess, policylib.TCP, 80) {
		t.Error("the rejected policy's pods are not isolated: it fails open")
	}

	// Fixed: it isolates the run=busybox pods (busybox-access is local).
	writeFile(t, bad, badPolicy("10.0.0.0/8"))
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	if st := s.a.Status(); len(st.Rejected) != 0 {
		t.Errorf("still rejected after the fix: %v", st.Rejected)
	}
	if got := s.metric(t, "podwall_enforcer_rejected_policies"); got != 0 {
		t.Errorf("rejected_policies %v, want 0", got)
	}
	rs = s.app.last()
	if p, ok := rs.Pod(busyboxAccess); !ok || p.Ingress == nil {
		t.Error("the fixed policy does not isolate busybox-access")
	}

	// Broken again: the previous valid version stays in force.
	writeFile(t, bad, badPolicy("10.0.0.0/33"))
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	if _, ok := s.a.Status().Rejected[key]; !ok {
		t.Error("the broken update is not reported")
	}
	if p, ok := s.app.last().Pod(busyboxAccess); !ok || p.Ingress == nil {
		t.Error("a broken update removed the previous valid version")
	}
}

// badPolicy isolates the run=busybox pods' ingress, allowing cidr.
func badPolicy(cidr string) string {
	return `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-busybox
  namespace: default
spec:
  podSelector:
    matchLabels:
      run: busybox
  ingress:
  - from:
    - ipBlock:
        cidr: ` + cidr + "\n"
}

// A file that does not load keeps the last good state: nothing is fed,
// the error is reported, and fixing the file resumes.
func TestBadManifestKeepsLastGoodState(t *testing.T) {
	dir := seedDir(t)
	policy := filepath.Join(dir, "policy.yaml")
	copyFile(t, filepath.Join(seed, "original", "networkpolicy.yaml"), policy)
	ld := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: ld.record}
	s := start(t, agent.Options{}, src)
	r := ld.next(t)
	s.waitGen(t, r.Generation)
	applies := s.app.count()

	// The policy file is replaced by malformed YAML, and the pods file
	// loses busybox-access: neither change may reach the kernel.
	writeFile(t, policy, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: access-httpd\n  spec: [}\n")
	r = ld.next(t)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "policy.yaml") || !strings.Contains(r.Err.Error(), "last good state") {
		t.Fatalf("malformed file: load error %v", r.Err)
	}
	if got := s.metric(t, "podwall_enforcer_source_errors_total", "source", "manifests"); got != 1 {
		t.Errorf("source_errors_total %v, want 1", got)
	}
	time.Sleep(50 * time.Millisecond)
	if s.app.count() != applies {
		t.Error("a failed load reached the kernel")
	}
	if rs := s.app.last(); allowed(rs, busybox, httpd1, policylib.TCP, 80) {
		t.Error("the last good policy is no longer enforced")
	}

	// A duplicate object is a load error too (every state on the way is
	// an error: copy.yaml comes while policy.yaml is still malformed).
	copyFile(t, filepath.Join(seed, "original", "networkpolicy.yaml"), filepath.Join(dir, "copy.yaml"))
	copyFile(t, filepath.Join(seed, "original", "networkpolicy-ipblock.yaml"), policy)
	for {
		r = ld.next(t)
		if r.Err == nil {
			t.Fatal("a directory with a duplicate loaded")
		}
		if strings.Contains(r.Err.Error(), "copy.yaml") && strings.Contains(r.Err.Error(), "policy.yaml") {
			break
		}
	}
	if rs := s.app.last(); allowed(rs, master, httpd1, policylib.TCP, 80) {
		t.Error("a half-read directory reached the kernel")
	}

	removeFile(t, filepath.Join(dir, "copy.yaml"))
	r = ld.next(t)
	if r.Err != nil {
		t.Fatalf("fixed: %v", r.Err)
	}
	s.waitGen(t, r.Generation)
	if rs := s.app.last(); !allowed(rs, master, httpd1, policylib.TCP, 80) {
		t.Error("the fixed directory is not enforced")
	}
}

// A first load that fails leaves the source unsynced: the agent touches
// nothing until the manifests load.
func TestNothingAppliedBeforeFirstGoodLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "broken.yaml"), "kind: Pod\n")
	ld := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: ld.record}
	s := start(t, agent.Options{}, src)
	if r := ld.next(t); r.Err == nil {
		t.Fatal("broken manifest loaded")
	}
	time.Sleep(50 * time.Millisecond)
	if s.app.count() != 0 || s.a.Ready() == nil {
		t.Fatal("the agent applied a ruleset before any manifest loaded")
	}
	removeFile(t, filepath.Join(dir, "broken.yaml"))
	copyFile(t, filepath.Join(seed, "cluster", "workloads.yaml"), filepath.Join(dir, "workloads.yaml"))
	for r := ld.next(t); r.Err != nil; r = ld.next(t) {
	}
	s.waitGen(t, 0)
	if err := s.a.Ready(); err != nil {
		t.Errorf("Ready after the first sync: %v", err)
	}
	if err := s.a.Healthy(); err != nil {
		t.Errorf("Healthy: %v", err)
	}
}

// chanSource feeds what a test sends it.
type chanSource struct {
	name   string
	synced bool
	fn     chan func(agent.Sink)
}

func (c *chanSource) Name() string { return c.name }
func (c *chanSource) Run(ctx context.Context, s agent.Sink) error {
	if c.synced {
		s.Synced()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case f := <-c.fn:
			f(s)
		}
	}
}

func (c *chanSource) do(f func(agent.Sink)) {
	done := make(chan struct{})
	c.fn <- func(s agent.Sink) { f(s); close(done) }
	<-done
}

func pod(name, node, ip string, l map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: l},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}

func denyAll(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
}

// Until every source is synced the kernel is not touched; a burst of
// changes costs few syncs; a failing Apply is retried until it succeeds.
func TestSyncGatingDebounceRetry(t *testing.T) {
	a := &chanSource{name: "a", synced: true, fn: make(chan func(agent.Sink))}
	b := &chanSource{name: "b", fn: make(chan func(agent.Sink))}
	var fails atomic.Int32
	fails.Store(2)
	app := &fakeApplier{fail: func(int) error {
		if fails.Add(-1) >= 0 {
			return errors.New("kernel says no")
		}
		return nil
	}}
	var reports atomic.Int32
	s := start(t, agent.Options{Applier: app, Debounce: 30 * time.Millisecond, OnSync: func(agent.SyncReport) { reports.Add(1) }}, a, b)
	a.do(func(s agent.Sink) { s.SetPod(pod("web", "k8s-node2", "10.0.0.1", map[string]string{"app": "web"})) })
	time.Sleep(50 * time.Millisecond)
	if app.count() != 0 || app.forgets != 0 {
		t.Fatal("applied before every source was synced")
	}
	b.do(func(s agent.Sink) { s.Synced() })
	s.waitGen(t, 1)
	if got := s.metric(t, "podwall_enforcer_sync_errors_total", "stage", "apply"); got != 2 {
		t.Errorf("sync_errors_total{stage=apply} %v, want 2", got)
	}

	before := reports.Load()
	var gen uint64
	a.do(func(s agent.Sink) {
		for i := range 50 {
			s.SetPod(pod("web", "k8s-node2", "10.0.0.1", map[string]string{"app": "web", "i": string(rune('a' + i%26))}))
		}
		s.SetPolicy(denyAll("deny"))
		gen = s.Generation()
	})
	s.waitGen(t, gen)
	if n := reports.Load() - before; n > 3 {
		t.Errorf("51 changes in a burst cost %d syncs", n)
	}
	if p, ok := app.last().Pod(netip.MustParseAddr("10.0.0.1")); !ok || p.Ingress == nil {
		t.Error("deny-all not applied")
	}

	// A pod elsewhere, a finished pod and a pod with a bad address.
	a.do(func(s agent.Sink) {
		s.SetPod(pod("other", "k8s-node1", "10.0.0.2", nil))
		done := pod("web", "k8s-node2", "10.0.0.1", nil)
		done.Status.Phase = corev1.PodSucceeded
		s.SetPod(done)
		s.SetPod(pod("bad", "k8s-node2", "10.0.0.300", nil))
		gen = s.Generation()
	})
	s.waitGen(t, gen)
	if rs := app.last(); len(rs.Pods) != 0 {
		t.Errorf("local pods %v, want none", rs.Pods)
	}
	if got := s.metric(t, "podwall_enforcer_rejected_objects", "kind", "Pod"); got != 1 {
		t.Errorf("rejected_objects{kind=Pod} %v, want 1", got)
	}
}

// The Kubernetes source, on a fake clientset: the agent follows pods and
// policies as they are created, changed and deleted.
func TestKubeSource(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "k8s-node2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.2.102"}}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		pod("httpd-1", "k8s-node2", "10.244.2.11", map[string]string{"name": "networkpolicy-demo"}),
		pod("busybox", "k8s-node1", "10.244.1.20", map[string]string{"run": "busybox"}),
	)
	s := start(t, agent.Options{}, &agent.KubeSource{Client: client})
	s.waitGen(t, 0)
	eventually(t, 5*time.Second, "the node's address", func() bool {
		rs := s.app.last()
		return rs != nil && len(rs.NodeAddrs) == 1 && len(rs.Pods) == 1
	})

	ctx := context.Background()
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "access-httpd"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"name": "networkpolicy-demo"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"access": "true"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 80}}},
			}},
		},
	}
	if _, err := client.NetworkingV1().NetworkPolicies("default").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "policy applied", func() bool {
		rs := s.app.last()
		return !allowed(rs, busybox, httpd1, policylib.TCP, 80)
	})
	// busybox gains access=true: allowed again.
	bb := pod("busybox", "k8s-node1", "10.244.1.20", map[string]string{"run": "busybox", "access": "true"})
	if _, err := client.CoreV1().Pods("default").Update(ctx, bb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "relabelled peer allowed", func() bool {
		return allowed(s.app.last(), busybox, httpd1, policylib.TCP, 80)
	})
	if err := client.NetworkingV1().NetworkPolicies("default").Delete(ctx, "access-httpd", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "policy deleted", func() bool {
		p, ok := s.app.last().Pod(httpd1)
		return !ok || p.Ingress == nil
	})
	if err := client.CoreV1().Pods("default").Delete(ctx, "httpd-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pod deleted", func() bool { return len(s.app.last().Pods) == 0 })
}

// DryRun returns the ruleset without applying anything, and fails on a
// manifest that does not load.
func TestDryRun(t *testing.T) {
	app := &fakeApplier{}
	a, err := agent.New(agent.Options{NodeName: "k8s-node2", Applier: app})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := a.DryRun(context.Background(), &agent.ManifestSource{Paths: []string{seed + "/cluster", seed + "/original/networkpolicy.yaml"}})
	if err != nil {
		t.Fatal(err)
	}
	if app.count() != 0 {
		t.Error("DryRun applied")
	}
	if size := agent.SizeOf(rs); size.Pods != 3 || size.Isolated != 2 || size.Chains != 4 || size.Rules != 10 || size.Elements != 6 { // as the rendered ruleset: per pod a chain and a tcp/80 chain
		t.Errorf("size %+v", size)
	}
	a2, _ := agent.New(agent.Options{NodeName: "k8s-node2", Applier: app})
	if _, err := a2.DryRun(context.Background(), &agent.ManifestSource{Paths: []string{seed + "/missing"}}); err == nil {
		t.Error("DryRun of a missing path succeeded")
	}
}

var _ agent.Applier = (*enforcer.Applier)(nil)

// A stand-in follows the rejected policy's latest version: a second broken
// version selecting other pods isolates those.
func TestStandInFollowsTheLatestVersion(t *testing.T) {
	dir := seedDir(t)
	copyFile(t, filepath.Join(seed, "original", "networkpolicy.yaml"), filepath.Join(dir, "policy.yaml"))
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, strings.Replace(badPolicy("10.0.0.0/33"), "run: busybox", "run: nothing", 1))
	ld := newLoads()
	src := &agent.ManifestSource{Paths: []string{dir}, Settle: 5 * time.Millisecond, OnLoad: ld.record}
	s := start(t, agent.Options{}, src)
	r := ld.next(t)
	s.waitGen(t, r.Generation)
	isolated := func() bool {
		p, ok := s.app.last().Pod(busyboxAccess)
		return ok && p.Ingress != nil
	}
	if isolated() {
		t.Fatal("busybox-access isolated by a stand-in selecting run=nothing")
	}
	writeFile(t, bad, badPolicy("10.0.0.0/33"))
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	if !isolated() {
		t.Error("the second broken version's stand-in does not isolate busybox-access")
	}
	// Deleted: nothing stands in any more.
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	r = ld.next(t)
	s.waitGen(t, r.Generation)
	if isolated() {
		t.Error("busybox-access still isolated after the policy went")
	}
}
