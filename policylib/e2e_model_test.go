package policylib_test

// The model, policy builders and truth tables of the upstream Kubernetes
// NetworkPolicy e2e suite (test/e2e/network/netpol: model.go, policies.go,
// reachability.go, truthtable.go, test_helper.go), rebuilt on top of the
// engine instead of a live cluster. See e2e_test.go for the cases.

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
)

// The upstream model: namespaces x, y and z (labelled ns=<name>; the engine
// adds kubernetes.io/metadata.name itself), each with pods a, b and c
// (labelled pod=<name>), each pod serving TCP, UDP and SCTP on ports 80 and
// 81 through named container ports serve-<port>-<protocol>, and reached by
// the probes through its own ClusterIP Service s-<namespace>-<pod>.
var (
	e2eNamespaces = []string{"x", "y", "z"}
	e2ePodNames   = []string{"a", "b", "c"}
	e2ePorts      = []int32{80, 81}
	e2eProtocols  = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
)

// e2eAllPods is the full 9-pod model, "x/a" to "z/c".
func e2eAllPods() []string {
	var out []string
	for _, ns := range e2eNamespaces {
		for _, p := range e2ePodNames {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}

// e2eFamily is the IP family of a single-stack cluster. Upstream runs on
// either; the ipBlock cases build /32 or /128 host CIDRs accordingly.
type e2eFamily int

const (
	e2eIPv4 e2eFamily = iota
	e2eIPv6
)

func (f e2eFamily) String() string {
	if f == e2eIPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// e2ePodIP gives pod n (1-based) of namespace m (1-based) 10.0.m.n or
// fd00:10::m:n.
func e2ePodIP(f e2eFamily, nsIndex, podIndex int) string {
	if f == e2eIPv6 {
		return fmt.Sprintf("fd00:10::%d:%d", nsIndex+1, podIndex+1)
	}
	return fmt.Sprintf("10.0.%d.%d", nsIndex+1, podIndex+1)
}

func e2ePortName(port int32, proto corev1.Protocol) string {
	return fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto)))
}

func e2eServiceName(ns, pod string) string { return fmt.Sprintf("s-%s-%s", ns, pod) }

// e2ePodLabels is Pod.LabelSelector upstream.
func e2ePodLabels(pod string) map[string]string { return map[string]string{"pod": pod} }

func e2eKubePod(f e2eFamily, nsIndex, podIndex int) *corev1.Pod {
	ns, name := e2eNamespaces[nsIndex], e2ePodNames[podIndex]
	ip := e2ePodIP(f, nsIndex, podIndex)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: e2ePodLabels(name)},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  ip,
			PodIPs: []corev1.PodIP{{IP: ip}},
		},
	}
	for _, port := range e2ePorts {
		for _, proto := range e2eProtocols {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
				Name:  fmt.Sprintf("cont-%d-%s", port, strings.ToLower(string(proto))),
				Ports: []corev1.ContainerPort{{ContainerPort: port, Name: e2ePortName(port, proto), Protocol: proto}},
			})
		}
	}
	return p
}

func e2eService(ns, pod string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: e2eServiceName(ns, pod)},
		Spec:       corev1.ServiceSpec{Selector: e2ePodLabels(pod)},
	}
	for _, port := range e2ePorts {
		for _, proto := range e2eProtocols {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
				Name:     fmt.Sprintf("service-port-%s-%d", strings.ToLower(string(proto)), port),
				Protocol: proto,
				Port:     port,
			})
		}
	}
	return svc
}

// ---- policy builders (policies.go) ----

type e2eSetFunc func(policy *networkingv1.NetworkPolicy)

func e2eGenNetworkPolicy(fn ...e2eSetFunc) *networkingv1.NetworkPolicy {
	policy := &networkingv1.NetworkPolicy{}
	for _, f := range fn {
		f(policy)
	}
	return policy
}

func e2eGenNetworkPolicyWithNameAndPodMatchLabel(name string, targetLabels map[string]string, otherFunc ...e2eSetFunc) *networkingv1.NetworkPolicy {
	otherFunc = append(otherFunc, e2eSetObjectMetaName(name), e2eSetSpecPodSelectorMatchLabels(targetLabels))
	return e2eGenNetworkPolicy(otherFunc...)
}

func e2eGenNetworkPolicyWithNameAndPodSelector(name string, targetSelector metav1.LabelSelector, otherFunc ...e2eSetFunc) *networkingv1.NetworkPolicy {
	otherFunc = append(otherFunc, e2eSetObjectMetaName(name), e2eSetSpecPodSelector(targetSelector))
	return e2eGenNetworkPolicy(otherFunc...)
}

func e2eSetObjectMetaName(name string) e2eSetFunc {
	return func(policy *networkingv1.NetworkPolicy) { policy.Name = name }
}

func e2eSetSpecPodSelector(targetSelector metav1.LabelSelector) e2eSetFunc {
	return func(policy *networkingv1.NetworkPolicy) { policy.Spec.PodSelector = targetSelector }
}

func e2eSetSpecPodSelectorMatchLabels(targetLabels map[string]string) e2eSetFunc {
	return func(policy *networkingv1.NetworkPolicy) {
		policy.Spec.PodSelector = metav1.LabelSelector{MatchLabels: targetLabels}
	}
}

func e2eSetSpecIngressRules(rules ...networkingv1.NetworkPolicyIngressRule) e2eSetFunc {
	return func(policy *networkingv1.NetworkPolicy) {
		if policy.Spec.Ingress == nil {
			policy.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			policy.Spec.PolicyTypes = append(policy.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		policy.Spec.Ingress = append(policy.Spec.Ingress, rules...)
	}
}

func e2eSetSpecEgressRules(rules ...networkingv1.NetworkPolicyEgressRule) e2eSetFunc {
	return func(policy *networkingv1.NetworkPolicy) {
		if policy.Spec.Egress == nil {
			policy.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			policy.Spec.PolicyTypes = append(policy.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		policy.Spec.Egress = append(policy.Spec.Egress, rules...)
	}
}

// e2eMakeLargeCIDRForIP is makeLargeCIDRForIP: the /4 that holds ip.
func e2eMakeLargeCIDRForIP(ip string) string {
	return netip.PrefixFrom(netip.MustParseAddr(ip), 4).Masked().String()
}

// e2eHostCIDR is ip/32 or ip/128, as the ipBlock cases build it.
func e2eHostCIDR(ip string) string {
	hostMask := 32
	if netip.MustParseAddr(ip).Is6() {
		hostMask = 128
	}
	return fmt.Sprintf("%s/%d", ip, hostMask)
}

// ---- reachability (reachability.go, truthtable.go) ----

// e2ePodString is "namespace/pod".
func e2ePodString(ns, pod string) string { return ns + "/" + pod }

// e2ePeer matches pods by namespace and name; empty fields match anything.
type e2ePeer struct {
	Namespace string
	Pod       string
}

func (p *e2ePeer) matches(pod string) bool {
	ns, name, _ := strings.Cut(pod, "/")
	return (p.Namespace == "" || p.Namespace == ns) && (p.Pod == "" || p.Pod == name)
}

// e2eReachability is the expected truth table of a probe, over the pods of
// the cluster under test. Setting a cell of a model pod the cluster does not
// run (one of the 9 left out of an upstream per-test topology) does nothing;
// naming a pod outside the model is a test bug and fails.
type e2eReachability struct {
	t        testing.TB
	pods     []string
	index    map[string]int
	expected []bool // [from*n+to]
}

func newE2EReachability(t testing.TB, pods []string, defaultExpectation bool) *e2eReachability {
	r := &e2eReachability{t: t, pods: pods, index: map[string]int{}, expected: make([]bool, len(pods)*len(pods))}
	for i, p := range pods {
		r.index[p] = i
	}
	for i := range r.expected {
		r.expected[i] = defaultExpectation
	}
	return r
}

func (r *e2eReachability) lookup(pod string) (int, bool) {
	r.t.Helper()
	if !slices.Contains(e2eAllPods(), pod) {
		r.t.Fatalf("reachability: %q is not a pod of the model", pod)
	}
	i, ok := r.index[pod]
	return i, ok
}

// Expect sets the expected value for a single observation.
func (r *e2eReachability) Expect(from, to string, connected bool) {
	r.t.Helper()
	i, okFrom := r.lookup(from)
	j, okTo := r.lookup(to)
	if okFrom && okTo {
		r.expected[i*len(r.pods)+j] = connected
	}
}

// ExpectAllIngress sets every observation into pod.
func (r *e2eReachability) ExpectAllIngress(pod string, connected bool) {
	r.t.Helper()
	if j, ok := r.lookup(pod); ok {
		for i := range r.pods {
			r.expected[i*len(r.pods)+j] = connected
		}
	}
}

// ExpectAllEgress sets every observation out of pod.
func (r *e2eReachability) ExpectAllEgress(pod string, connected bool) {
	r.t.Helper()
	if i, ok := r.lookup(pod); ok {
		for j := range r.pods {
			r.expected[i*len(r.pods)+j] = connected
		}
	}
}

// ExpectPeer sets every observation from a pod matching from to a pod
// matching to.
func (r *e2eReachability) ExpectPeer(from, to *e2ePeer, connected bool) {
	for i, f := range r.pods {
		if !from.matches(f) {
			continue
		}
		for j, t := range r.pods {
			if to.matches(t) {
				r.expected[i*len(r.pods)+j] = connected
			}
		}
	}
}

// e2ePrettyPrint renders a truth table as upstream's PrettyPrint does: rows
// are sources, columns destinations, '.' true and 'X' false.
func e2ePrettyPrint(pods []string, cell func(from, to int) bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t%-5s", "-")
	for _, p := range pods {
		fmt.Fprintf(&b, "%-5s", p)
	}
	for i, from := range pods {
		fmt.Fprintf(&b, "\n\t%-5s", from)
		for j := range pods {
			mark := "X"
			if cell(i, j) {
				mark = "."
			}
			fmt.Fprintf(&b, "%-5s", mark)
		}
	}
	return b.String()
}

// ---- the cluster ----

// e2eCluster is the state an upstream test case builds (namespaces, pods,
// Services, policies) held both as API objects and in an engine that takes
// every change through its incremental Set*/Delete* calls.
type e2eCluster struct {
	t          *testing.T
	family     e2eFamily
	pods       []string // the pods running, in model order
	namespaces map[string]*corev1.Namespace
	kubePods   map[string]*corev1.Pod
	services   []*corev1.Service
	policies   map[types.NamespacedName]*networkingv1.NetworkPolicy
	engine     *policylib.Engine
	step       string // the last By, for messages
	probes     int
}

// newE2ECluster creates the three namespaces and the given pods (nil: all
// nine) with their Services, as initializeResources does.
func newE2ECluster(t *testing.T, family e2eFamily, pods []string) *e2eCluster {
	t.Helper()
	if pods == nil {
		pods = e2eAllPods()
	}
	c := &e2eCluster{
		t:          t,
		family:     family,
		namespaces: map[string]*corev1.Namespace{},
		kubePods:   map[string]*corev1.Pod{},
		policies:   map[types.NamespacedName]*networkingv1.NetworkPolicy{},
		engine:     policylib.NewEngine(),
	}
	for _, ns := range e2eNamespaces {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}}}
		c.namespaces[ns] = obj
		c.engine.SetNamespace(obj.DeepCopy())
	}
	for i, ns := range e2eNamespaces {
		for j, name := range e2ePodNames {
			if !slices.Contains(pods, e2ePodString(ns, name)) {
				continue
			}
			p := e2eKubePod(family, i, j)
			c.pods = append(c.pods, e2ePodString(ns, name))
			c.kubePods[e2ePodString(ns, name)] = p
			if err := c.engine.SetPod(p.DeepCopy()); err != nil {
				t.Fatalf("SetPod %s/%s: %v", ns, name, err)
			}
			svc := e2eService(ns, name)
			c.services = append(c.services, svc)
			c.engine.SetService(svc.DeepCopy())
		}
	}
	if len(c.pods) != len(pods) {
		t.Fatalf("topology %v names pods outside the model", pods)
	}
	return c
}

// getK8sNamespaces returns the names of namespaces x, y and z.
func (c *e2eCluster) getK8sNamespaces() (string, string, string) {
	return e2eNamespaces[0], e2eNamespaces[1], e2eNamespaces[2]
}

// By records what the case is doing, for failure messages.
func (c *e2eCluster) By(text string) { c.step = text }

// NewReachability is an expect-all (or expect-none) table over the pods.
func (c *e2eCluster) NewReachability(defaultExpectation bool) *e2eReachability {
	return newE2EReachability(c.t, c.pods, defaultExpectation)
}

// PodIP is the IP of a pod (listing the namespace's pods by label upstream).
func (c *e2eCluster) PodIP(ns, pod string) string {
	c.t.Helper()
	p, ok := c.kubePods[e2ePodString(ns, pod)]
	if !ok {
		c.t.Fatalf("pod %s/%s is not running in this topology", ns, pod)
	}
	return p.Status.PodIP
}

// CreatePolicy creates a policy in a namespace; it must not exist yet.
func (c *e2eCluster) CreatePolicy(policy *networkingv1.NetworkPolicy, ns string) {
	c.t.Helper()
	key := types.NamespacedName{Namespace: ns, Name: policy.Name}
	if _, ok := c.policies[key]; ok {
		c.t.Fatalf("CreatePolicy %s: already exists", key)
	}
	c.setPolicy(policy, ns)
}

// UpdatePolicy replaces an existing policy.
func (c *e2eCluster) UpdatePolicy(policy *networkingv1.NetworkPolicy, ns string) {
	c.t.Helper()
	key := types.NamespacedName{Namespace: ns, Name: policy.Name}
	if _, ok := c.policies[key]; !ok {
		c.t.Fatalf("UpdatePolicy %s: not found", key)
	}
	c.setPolicy(policy, ns)
}

func (c *e2eCluster) setPolicy(policy *networkingv1.NetworkPolicy, ns string) {
	c.t.Helper()
	obj := policy.DeepCopy()
	obj.Namespace = ns
	if err := c.engine.SetPolicy(obj.DeepCopy()); err != nil {
		c.t.Fatalf("SetPolicy %s/%s: %v", ns, obj.Name, err)
	}
	c.policies[types.NamespacedName{Namespace: ns, Name: obj.Name}] = obj
}

// CleanNetworkPolicies deletes every policy of every namespace.
func (c *e2eCluster) CleanNetworkPolicies() {
	for _, key := range slices.SortedFunc(maps.Keys(c.policies), e2eCompareKeys) {
		c.engine.DeletePolicy(key.Namespace, key.Name)
		delete(c.policies, key)
	}
}

func e2eCompareKeys(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) }

// AddNamespaceLabel adds a label to a namespace.
func (c *e2eCluster) AddNamespaceLabel(ns, key, val string) {
	obj := c.namespaces[ns]
	obj.Labels[key] = val
	c.engine.SetNamespace(obj.DeepCopy())
}

// AddPodLabels merges labels into a pod's.
func (c *e2eCluster) AddPodLabels(ns, pod string, labels map[string]string) {
	c.t.Helper()
	p, ok := c.kubePods[e2ePodString(ns, pod)]
	if !ok {
		c.t.Fatalf("pod %s/%s is not running in this topology", ns, pod)
	}
	maps.Copy(p.Labels, labels)
	if err := c.engine.SetPod(p.DeepCopy()); err != nil {
		c.t.Fatalf("SetPod %s/%s: %v", ns, pod, err)
	}
}

func (c *e2eCluster) snapshot() policylib.Snapshot {
	var s policylib.Snapshot
	for _, ns := range e2eNamespaces {
		s.Namespaces = append(s.Namespaces, c.namespaces[ns].DeepCopy())
	}
	for _, p := range c.pods {
		s.Pods = append(s.Pods, c.kubePods[p].DeepCopy())
	}
	for _, svc := range c.services {
		s.Services = append(s.Services, svc.DeepCopy())
	}
	for _, key := range slices.SortedFunc(maps.Keys(c.policies), e2eCompareKeys) {
		s.Policies = append(s.Policies, c.policies[key].DeepCopy())
	}
	return s
}

func (c *e2eCluster) podKeys() []types.NamespacedName {
	keys := make([]types.NamespacedName, len(c.pods))
	for i, p := range c.pods {
		ns, name, _ := strings.Cut(p, "/")
		keys[i] = types.NamespacedName{Namespace: ns, Name: name}
	}
	return keys
}

func e2eProtocol(p corev1.Protocol) policylib.Protocol {
	return policylib.MustParseProtocol(string(p))
}

// e2eVerdict says why one direction of a flow was decided as it was.
func e2eVerdict(v policylib.Verdict) string {
	if v.Outcome == policylib.AllowedByRule {
		return "allowed by " + v.Rule.String()
	}
	return v.Outcome.String()
}

// ValidateOrFail computes the engine's truth table for a probe of toPort
// over protocol from every pod to every pod and compares it, loopback
// included, with the expected one, printing both and their comparison on a
// mismatch. The observed table is the engine's Matrix; every cell is also
// checked against the way upstream probes (a connection to the destination
// pod's ClusterIP Service, translated by ResolveService and judged by
// Decide) and against an engine built from scratch from the same objects,
// so the incremental updates are checked too.
func (c *e2eCluster) ValidateOrFail(toPort int32, protocol corev1.Protocol, r *e2eReachability) {
	c.t.Helper()
	c.probes++
	proto := e2eProtocol(protocol)
	what := fmt.Sprintf("probe %d (%s/%d)", c.probes, protocol, toPort)
	if c.step != "" {
		what += " after " + strings.TrimSuffix(c.step, ".")
	}
	keys := c.podKeys()
	ports := []policylib.PortProtocol{{Port: toPort, Protocol: proto}}
	m, err := c.engine.Matrix(keys, ports)
	if err != nil {
		c.t.Fatalf("%s: Matrix: %v", what, err)
	}
	n := len(c.pods)
	observed := func(i, j int) bool { return m.Allowed(i, j, 0) }

	// An engine built from scratch must agree with the incremental one.
	fresh, err := policylib.Build(c.snapshot())
	if err != nil {
		c.t.Fatalf("%s: Build: %v", what, err)
	}
	fm, err := fresh.Matrix(keys, ports)
	if err != nil {
		c.t.Fatalf("%s: Matrix of the rebuilt engine: %v", what, err)
	}
	if diff := e2eDiff(n, observed, func(i, j int) bool { return fm.Allowed(i, j, 0) }); diff > 0 {
		c.t.Errorf("%s: the incrementally updated engine and one built from scratch disagree on %d cells\n\nincremental:\n%s\n\nfrom scratch:\n%s",
			what, diff, e2ePrettyPrint(c.pods, observed), e2ePrettyPrint(c.pods, func(i, j int) bool { return fm.Allowed(i, j, 0) }))
	}

	// Upstream probes each pod through its Service.
	for i, from := range keys {
		for j, to := range keys {
			flows, err := c.engine.ResolveService(policylib.PodEndpoint(from.Namespace, from.Name), to.Namespace, e2eServiceName(to.Namespace, to.Name), toPort, proto)
			if err != nil {
				c.t.Fatalf("%s: ResolveService %s -> %s: %v", what, c.pods[i], c.pods[j], err)
			}
			want := policylib.Flow{From: policylib.PodEndpoint(from.Namespace, from.Name), To: policylib.PodEndpoint(to.Namespace, to.Name), Protocol: proto, Port: toPort}
			if len(flows) != 1 || flows[0].Flow != want {
				c.t.Fatalf("%s: Service %s translated to %v, want the one flow %s", what, e2eServiceName(to.Namespace, to.Name), flows, want)
			}
			d, err := c.engine.Decide(flows[0].Flow)
			if err != nil {
				c.t.Fatalf("%s: Decide %s: %v", what, want, err)
			}
			if d.Allowed != observed(i, j) {
				c.t.Errorf("%s: %s: Decide through the Service says allowed=%t, Matrix says %t", what, want, d.Allowed, observed(i, j))
			}
		}
	}

	expected := func(i, j int) bool { return r.expected[i*n+j] }
	wrong := e2eDiff(n, expected, observed)
	if wrong == 0 {
		return
	}
	var cells strings.Builder
	for i, from := range keys {
		for j, to := range keys {
			if expected(i, j) == observed(i, j) {
				continue
			}
			f := policylib.Flow{From: policylib.PodEndpoint(from.Namespace, from.Name), To: policylib.PodEndpoint(to.Namespace, to.Name), Protocol: proto, Port: toPort}
			d, _ := c.engine.Decide(f)
			fmt.Fprintf(&cells, "\n\t%s: expected allowed=%t, engine says %t (egress: %s; ingress: %s)",
				f, expected(i, j), d.Allowed, e2eVerdict(d.Egress), e2eVerdict(d.Ingress))
		}
	}
	c.t.Errorf("%s: had %d wrong results in reachability matrix\n\nexpected:\n%s\n\nobserved:\n%s\n\ncomparison ('X' marks a wrong cell):\n%s\n\nwrong cells:%s",
		what, wrong,
		e2ePrettyPrint(c.pods, expected),
		e2ePrettyPrint(c.pods, observed),
		e2ePrettyPrint(c.pods, func(i, j int) bool { return expected(i, j) == observed(i, j) }),
		cells.String())
}

func e2eDiff(n int, a, b func(i, j int) bool) int {
	diff := 0
	for i := range n {
		for j := range n {
			if a(i, j) != b(i, j) {
				diff++
			}
		}
	}
	return diff
}
