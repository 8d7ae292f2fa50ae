package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/policylib/addrset"
)

// Every built-in below decides nothing itself: it converts its arguments,
// calls policylib (or addrset) and converts the answer back.

func selectorMatches(bctx rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	o, err := objectArg(args, 0, "selector")
	if err != nil {
		return nil, err
	}
	sel, err := cached(bctx, "selector", o, func() (policylib.Selector, error) {
		var ls metav1.LabelSelector
		if err := decode(o, &ls, true); err != nil {
			return policylib.Selector{}, fmt.Errorf("%s: not a label selector: %w", argName(0, "selector"), err)
		}
		s, err := policylib.ParseSelector(&ls)
		if err != nil {
			return policylib.Selector{}, fmt.Errorf("%s: invalid label selector: %w", argName(0, "selector"), err)
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	labels, err := labelsArg(args, 1)
	if err != nil {
		return nil, err
	}
	return ast.InternedTerm(sel.Matches(labels)), nil
}

func ipBlockContains(bctx rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	o, err := objectArg(args, 0, "ipblock")
	if err != nil {
		return nil, err
	}
	set, err := cached(bctx, "ipblock", o, func() (addrset.Set, error) {
		var b networkingv1.IPBlock
		if err := decode(o, &b, true); err != nil {
			return addrset.Set{}, fmt.Errorf("%s: not an ipBlock: %w", argName(0, "ipblock"), err)
		}
		s, err := addrset.IPBlock(b.CIDR, b.Except)
		if err != nil {
			return addrset.Set{}, fmt.Errorf("%s: %w", argName(0, "ipblock"), err)
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	s, err := stringArg(args, 1, "addr")
	if err != nil {
		return nil, err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argName(1, "addr"), err)
	}
	return ast.InternedTerm(set.Contains(a.Unmap())), nil
}

// portsAllow asks policylib whether the policy's rules in one direction
// allow a port on a pod, with every rule's peers widened to "everyone": an
// engine holding the pod, a copy of the policy selecting every pod of the
// pod's namespace, and a flow the widened rules can only refuse on ports.
func portsAllow(_ rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	np, err := policyArg(args, 0)
	if err != nil {
		return nil, err
	}
	pod, err := podArg(args, 1)
	if err != nil {
		return nil, err
	}
	n, ok := args[2].Value.(ast.Number)
	if !ok {
		return nil, fmt.Errorf("%s: want a number, got %s", argName(2, "port"), ast.ValueName(args[2].Value))
	}
	port, ok := n.Int()
	if !ok || port < 0 || port > 65535 {
		return nil, fmt.Errorf("%s: %v: want an integer port 1-65535", argName(2, "port"), n)
	}
	protoName, err := stringArg(args, 3, "protocol")
	if err != nil {
		return nil, err
	}
	proto, err := policylib.ParseProtocol(protoName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argName(3, "protocol"), err)
	}
	dir, err := directionArg(args, 4)
	if err != nil {
		return nil, err
	}

	d := policylib.DefaultPolicy(np)
	want := networkingv1.PolicyTypeIngress
	if dir == policylib.Egress {
		want = networkingv1.PolicyTypeEgress
	}
	isolates := false
	for _, t := range d.Spec.PolicyTypes {
		isolates = isolates || t == want
	}
	if !isolates {
		return ast.InternedTerm(false), nil // the API ignores rules of a direction the policy does not isolate
	}
	wide := d.DeepCopy()
	wide.Spec.PodSelector = metav1.LabelSelector{}
	wide.Spec.PolicyTypes = []networkingv1.PolicyType{want}
	for i := range wide.Spec.Ingress {
		wide.Spec.Ingress[i].From = nil
	}
	for i := range wide.Spec.Egress {
		wide.Spec.Egress[i].To = nil
	}
	ns := np.Namespace
	dst := &corev1.Pod{Spec: *pod.Spec.DeepCopy()}
	dst.Name, dst.Namespace = "destination", ns
	dst.Spec.HostNetwork = false
	src := &corev1.Pod{}
	src.Name, src.Namespace = "source", ns
	eng, err := policylib.Build(policylib.Snapshot{Pods: []*corev1.Pod{dst, src}, Policies: []*networkingv1.NetworkPolicy{wide}})
	if err != nil {
		return nil, err
	}
	from := policylib.AddrEndpoint(netip.MustParseAddr("192.0.2.1")) // TEST-NET-1: never a pod here
	if dir == policylib.Egress {
		from = policylib.PodEndpoint(ns, src.Name)
	}
	dec, err := eng.Decide(policylib.Flow{From: from, To: policylib.PodEndpoint(ns, dst.Name), Protocol: proto, Port: int32(port)})
	if err != nil {
		return nil, err
	}
	v := dec.Ingress
	if dir == policylib.Egress {
		v = dec.Egress
	}
	return ast.InternedTerm(v.Outcome == policylib.AllowedByRule), nil
}

func isDefaultDeny(_ rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	np, err := policyArg(args, 0)
	if err != nil {
		return nil, err
	}
	dir, err := directionArg(args, 1)
	if err != nil {
		return nil, err
	}
	return ast.InternedTerm(policylib.IsDefaultDeny(np, dir)), nil
}

func allowAllRules(_ rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	np, err := policyArg(args, 0)
	if err != nil {
		return nil, err
	}
	dir, err := directionArg(args, 1)
	if err != nil {
		return nil, err
	}
	idx := policylib.AllowAllRules(np, dir)
	out := make([]*ast.Term, len(idx))
	for i, x := range idx {
		out[i] = ast.InternedTerm(x)
	}
	return ast.ArrayTerm(out...), nil
}

func lint(bctx rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	o, err := objectArg(args, 0, "snapshot")
	if err != nil {
		return nil, err
	}
	snap, err := decodeSnapshot(o, argName(0, "snapshot"))
	if err != nil {
		return nil, err
	}
	findings := policylib.Lint(snap)
	out := make([]*ast.Term, len(findings))
	for i, f := range findings {
		out[i] = ast.ObjectTerm(
			ast.Item(ast.InternedTerm("severity"), ast.StringTerm(f.Severity.String())),
			ast.Item(ast.InternedTerm("code"), ast.StringTerm(f.Code)),
			ast.Item(ast.InternedTerm("policy"), ast.ObjectTerm(
				ast.Item(ast.InternedTerm("namespace"), ast.StringTerm(f.Policy.Namespace)),
				ast.Item(ast.InternedTerm("name"), ast.StringTerm(f.Policy.Name)),
			)),
			ast.Item(ast.InternedTerm("field"), ast.StringTerm(f.Field)),
			ast.Item(ast.InternedTerm("message"), ast.StringTerm(f.Message)),
		)
	}
	return ast.ArrayTerm(out...), nil
}

// ---- podwall.decide ----

func decide(bctx rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	o, err := objectArg(args, 0, "snapshot")
	if err != nil {
		return nil, err
	}
	fo, err := objectArg(args, 1, "flow")
	if err != nil {
		return nil, err
	}
	flow, err := flowArg(fo, flowArgName)
	if err != nil {
		return nil, err
	}
	snap, err := engineFor(bctx, o)
	if err != nil {
		return nil, err
	}
	x, err := snap.eng.Explain(flow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flowArgName, err)
	}
	return snap.explanationTerm(x), nil
}

// ---- podwall.snapshot_errors ----

// snapshotErrors returns why podwall.decide would refuse a snapshot, one
// message per object (none when it would decide): a rule can then fail
// closed by itself, naming them, where decide's error would abort the
// whole query and every other rule's findings with it.
func snapshotErrors(bctx rego.BuiltinContext, args []*ast.Term) (*ast.Term, error) {
	o, err := objectArg(args, 0, "snapshot")
	if err != nil {
		return nil, err
	}
	_, err = engineFor(bctx, o)
	var msgs []*ast.Term
	for _, e := range splitSnapshotError(err) {
		msgs = append(msgs, ast.StringTerm(strings.TrimPrefix(e.Error(), snapshotArgName+": ")))
	}
	return ast.ArrayTerm(msgs...), nil
}

// splitSnapshotError splits engineFor's error into one per object: the
// policies policylib.Build refused come joined under one wrapper.
func splitSnapshotError(err error) []error {
	if err == nil {
		return nil
	}
	if inner := errors.Unwrap(err); inner != nil {
		if j, ok := inner.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}

// snapshotArgName prefixes engineFor's errors.
var snapshotArgName = argName(0, "snapshot")

// flowArgName is computed once: a flow is read on every decision.
var flowArgName = argName(1, "flow")

// engineBuilds counts the engines podwall.decide prepared for a query
// (compiled, or taken from the recent ones), for tests of the per-query
// cache; engineCompiles those it compiled.
var engineBuilds, engineCompiles atomic.Int64

// compiledSnapshot is a snapshot's engine, with the halves of verdicts
// kept as terms: a direction's outcome, rule and policies depend on the
// snapshot and that end of the flow alone, and recur across a query's
// decisions (every port probed between two pods, say); building them
// afresh was most of a decision's cost.
type compiledSnapshot struct {
	eng   *policylib.Engine
	mu    sync.Mutex
	sides map[sideKey]*ast.Term
}

// sideKey determines a direction's {outcome, rule, policies}: the policies
// are those selecting the end's pod, which the endpoint determines.
type sideKey struct {
	dir     policylib.Direction
	end     policylib.Endpoint
	outcome policylib.Outcome
	rule    policylib.RuleRef
}

// engineFor compiles a snapshot once per query: a rule that decides many
// flows against one snapshot builds the engine once. Across queries, the
// last few snapshots compiled are kept (recentEngines): the cluster as it
// is, which protectedAccess decides against for every NetworkPolicy
// request ("before" the change), is the same snapshot until the cluster
// changes.
func engineFor(bctx rego.BuiltinContext, o ast.Object) (*compiledSnapshot, error) {
	return cached(bctx, "engine", o, func() (*compiledSnapshot, error) {
		engineBuilds.Add(1)
		if e, ok := recentEngines.get(o); ok {
			return e.snap, e.err
		}
		engineCompiles.Add(1)
		c, err := compileSnapshot(o)
		// A refusal is kept too: while the cluster holds an object policylib
		// refuses, every request would otherwise compile it again.
		recentEngines.put(o, c, err)
		return c, err
	})
}

// compileSnapshot builds the engine of a snapshot. Never decide on half a
// cluster: an invalid object is an error.
func compileSnapshot(o ast.Object) (*compiledSnapshot, error) {
	snap, err := decodeSnapshot(o, snapshotArgName)
	if err != nil {
		return nil, err
	}
	eng, err := policylib.Build(snap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", snapshotArgName, err)
	}
	return &compiledSnapshot{eng: eng, sides: map[sideKey]*ast.Term{}}, nil
}

// maxRecentEngines is how many compiled snapshots are kept across
// queries: one cluster, before and after a change. An engine holds the
// cluster, and its snapshot is kept too, for the equality check.
const maxRecentEngines = 2

// recentEngines are the snapshots compiled last, most recent first.
var recentEngines recentCache

type recentCache struct {
	mu      sync.Mutex
	entries []recentEngine
}

type recentEngine struct {
	src  ast.Object
	snap *compiledSnapshot
	err  error // why the snapshot was refused, when it was
}

// get returns the engine, or the refusal, of a snapshot equal to o: its
// hash first (ast objects keep theirs), then the values themselves.
func (r *recentCache) get(o ast.Object) (recentEngine, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := o.Hash()
	for i, e := range r.entries {
		if e.src.Hash() == h && sameValue(e.src, o) {
			copy(r.entries[1:i+1], r.entries[:i])
			r.entries[0] = e
			return e, true
		}
	}
	return recentEngine{}, false
}

func (r *recentCache) put(o ast.Object, c *compiledSnapshot, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append([]recentEngine{{src: o, snap: c, err: err}}, r.entries...)
	if len(r.entries) > maxRecentEngines {
		r.entries[maxRecentEngines] = recentEngine{}
		r.entries = r.entries[:maxRecentEngines]
	}
}

// parseEndpoint is policylib.ParseEndpoint, which tries an address first:
// a namespace/name, the usual end, has a slash and no colon or percent
// sign, so it cannot be one (nor node/NAME), and skips the attempt and the
// error it allocates.
func parseEndpoint(s string) (policylib.Endpoint, error) {
	if ns, name, ok := strings.Cut(s, "/"); ok && ns != "" && ns != "node" && !strings.ContainsAny(ns, ":%") &&
		name != "" && !strings.Contains(name, "/") {
		return policylib.PodEndpoint(ns, name), nil
	}
	return policylib.ParseEndpoint(s)
}

// flowArg reads {from, to, protocol, port}; protocol defaults to TCP, port
// is required unless the protocol is ICMP.
func flowArg(o ast.Object, arg string) (policylib.Flow, error) {
	f := policylib.Flow{Protocol: policylib.TCP}
	var haveFrom, haveTo, havePort bool
	err := o.Iter(func(k, v *ast.Term) error {
		ks, _ := k.Value.(ast.String)
		key := string(ks)
		str := func() (string, error) {
			s, ok := v.Value.(ast.String)
			if !ok {
				return "", fmt.Errorf("%s: %s: want a string, got %s", arg, key, ast.ValueName(v.Value))
			}
			return string(s), nil
		}
		switch key {
		case "from", "to":
			s, err := str()
			if err != nil {
				return err
			}
			ep, err := parseEndpoint(s)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", arg, key, err)
			}
			if key == "from" {
				f.From, haveFrom = ep, true
			} else {
				f.To, haveTo = ep, true
			}
		case "protocol":
			s, err := str()
			if err != nil {
				return err
			}
			if f.Protocol, err = policylib.ParseProtocol(s); err != nil {
				return fmt.Errorf("%s: protocol: %w", arg, err)
			}
		case "port":
			n, ok := v.Value.(ast.Number)
			if !ok {
				return fmt.Errorf("%s: port: want a number, got %s", arg, ast.ValueName(v.Value))
			}
			p, ok := n.Int()
			if !ok || p < 0 || p > 65535 {
				return fmt.Errorf("%s: port: %v: want an integer port 1-65535", arg, n)
			}
			f.Port, havePort = int32(p), true
		default:
			return fmt.Errorf("%s: unknown field %v: want from, to, protocol, port", arg, k)
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	var missing []string
	if !haveFrom {
		missing = append(missing, "from")
	}
	if !haveTo {
		missing = append(missing, "to")
	}
	if !havePort && f.Protocol.HasPorts() {
		missing = append(missing, "port")
	}
	if len(missing) > 0 {
		return f, fmt.Errorf("%s: missing %s", arg, strings.Join(missing, ", "))
	}
	return f, nil
}

// The keys and fixed values of a decision, made once.
var (
	termAllowed   = ast.StringTerm("allowed")
	termEgress    = ast.StringTerm("egress")
	termIngress   = ast.StringTerm("ingress")
	termNotes     = ast.StringTerm("notes")
	termReasons   = ast.StringTerm("reasons")
	termOutcome   = ast.StringTerm("outcome")
	termRule      = ast.StringTerm("rule")
	termPolicies  = ast.StringTerm("policies")
	termPolicy    = ast.StringTerm("policy")
	termNamespace = ast.StringTerm("namespace")
	termName      = ast.StringTerm("name")
	termDirection = ast.StringTerm("direction")
	termPeer      = ast.StringTerm("peer")
	termPort      = ast.StringTerm("port")
	termRef       = ast.StringTerm("ref")
	outcomeTerms  = func() []*ast.Term {
		var ts []*ast.Term
		for o := policylib.NotApplicable; o <= policylib.Denied; o++ {
			ts = append(ts, ast.StringTerm(o.String()))
		}
		return ts
	}()
)

// explanationTerm is x as podwall.decide returns it:
// {allowed, egress, ingress, notes, reasons}.
func (c *compiledSnapshot) explanationTerm(x policylib.Explanation) *ast.Term {
	notes := ast.InternedEmptyArray
	if len(x.Notes) > 0 {
		ts := make([]*ast.Term, len(x.Notes))
		for i, n := range x.Notes {
			ts[i] = ast.StringTerm(n)
		}
		notes = ast.ArrayTerm(ts...)
	}
	return ast.ObjectTerm(
		ast.Item(termAllowed, ast.InternedTerm(x.Decision.Allowed)),
		ast.Item(termEgress, c.sideTerm(x.Decision.Egress, policylib.Egress, x.From, x.EgressPolicies)),
		ast.Item(termIngress, c.sideTerm(x.Decision.Ingress, policylib.Ingress, x.To, x.IngressPolicies)),
		ast.Item(termNotes, notes),
		ast.Item(termReasons, ast.StringTerm(x.String())),
	)
}

// sideTerm is one direction's {outcome, rule, policies}, built once per
// sideKey.
func (c *compiledSnapshot) sideTerm(v policylib.Verdict, dir policylib.Direction, end policylib.EndpointInfo, pols []ktypes.NamespacedName) *ast.Term {
	key := sideKey{dir: dir, end: end.Endpoint, outcome: v.Outcome, rule: v.Rule}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.sides[key]; t != nil {
		return t
	}
	outcome := ast.StringTerm(v.Outcome.String())
	if int(v.Outcome) < len(outcomeTerms) {
		outcome = outcomeTerms[v.Outcome]
	}
	rule := ast.InternedNullTerm
	if v.Outcome == policylib.AllowedByRule {
		rule = ruleTerm(v.Rule)
	}
	policies := ast.InternedEmptyArray
	if len(pols) > 0 {
		ts := make([]*ast.Term, len(pols))
		for i, p := range pols {
			ts[i] = ast.StringTerm(p.String())
		}
		policies = ast.ArrayTerm(ts...)
	}
	t := ast.ObjectTerm(
		ast.Item(termOutcome, outcome),
		ast.Item(termRule, rule),
		ast.Item(termPolicies, policies),
	)
	c.sides[key] = t
	return t
}

func ruleTerm(r policylib.RuleRef) *ast.Term {
	return ast.ObjectTerm(
		ast.Item(termPolicy, ast.StringTerm(r.Policy.String())),
		ast.Item(termNamespace, ast.StringTerm(r.Policy.Namespace)),
		ast.Item(termName, ast.StringTerm(r.Policy.Name)),
		ast.Item(termDirection, ast.StringTerm(r.Direction.String())),
		ast.Item(termRule, ast.InternedTerm(r.Rule)),
		ast.Item(termPeer, ast.InternedTerm(r.Peer)),
		ast.Item(termPort, ast.InternedTerm(r.Port)),
		ast.Item(termRef, ast.StringTerm(r.String())),
	)
}
