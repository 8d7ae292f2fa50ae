package rules

import (
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"
)

// BuiltinPrefix is the namespace of every podwall built-in.
const BuiltinPrefix = "podwall."

// builtin is one podwall built-in: its typed declaration and its
// implementation. The table below is the only place a built-in is defined;
// [Functions], [Declarations] and [RegisterGlobal] all read it.
type builtin struct {
	name string
	desc string
	decl *types.Function
	impl rego.BuiltinDyn
}

func (b *builtin) function() *rego.Function {
	return &rego.Function{Name: b.name, Description: b.desc, Decl: b.decl}
}

func (b *builtin) astBuiltin() *ast.Builtin {
	return &ast.Builtin{Name: b.name, Description: b.desc, Decl: b.decl}
}

var (
	tAnyObject = types.NewObject(nil, types.NewDynamicProperty(types.A, types.A))
	tLabels    = types.NewObject(nil, types.NewDynamicProperty(types.S, types.S))
)

func named(name string, t types.Type, desc string) *types.NamedType {
	return types.Named(name, t).Description(desc)
}

var builtinTable = []*builtin{
	{
		name: "podwall.selector_matches",
		desc: "Reports whether a Kubernetes label selector (metav1.LabelSelector JSON) matches a set of labels, with exactly apimachinery's semantics (NotIn and DoesNotExist match a missing key; {} matches everything). An invalid selector is an error.",
		decl: types.NewFunction(types.Args(
			named("selector", tAnyObject, "a metav1.LabelSelector: matchLabels and/or matchExpressions"),
			named("labels", tLabels, "the labels to match, e.g. a pod's metadata.labels"),
		), named("matches", types.B, "true when every requirement holds")),
		impl: selectorMatches,
	},
	{
		name: "podwall.ipblock_contains",
		desc: "Reports whether an address is inside a NetworkPolicy ipBlock (cidr minus every except). An invalid block or address is an error.",
		decl: types.NewFunction(types.Args(
			named("ipblock", tAnyObject, "a networking/v1 IPBlock: {\"cidr\": ..., \"except\": [...]}"),
			named("addr", types.S, "an IPv4 or IPv6 address"),
		), named("contains", types.B, "true when addr is in cidr and in no except")),
		impl: ipBlockContains,
	},
	{
		name: "podwall.ports_allow",
		desc: "Reports whether one of a NetworkPolicy's rules in a direction allows a port and protocol on a destination pod, ignoring peers: a rule without ports allows everything (ICMP included), named ports resolve on the pod. False when the policy does not isolate that direction.",
		decl: types.NewFunction(types.Args(
			named("policy", tAnyObject, "a networking/v1 NetworkPolicy"),
			named("pod", tAnyObject, "the destination core/v1 Pod, whose container ports resolve named ports"),
			named("port", types.N, "the destination port, 1-65535 (ignored for ICMP)"),
			named("protocol", types.S, "TCP, UDP, SCTP or ICMP"),
			named("direction", types.S, "ingress or egress"),
		), named("allowed", types.B, "true when a rule's ports allow the port")),
		impl: portsAllow,
	},
	{
		name: "podwall.decide",
		desc: "Decides a flow against a cluster snapshot with policylib, as podwall explain does: the verdict of the source's egress and the destination's ingress, the rule that allowed each, and the reasons in words. The compiled snapshot is cached within a query.",
		decl: types.NewFunction(types.Args(
			named("snapshot", tAnyObject, "{namespaces, pods, policies, nodes, services}: arrays of Kubernetes objects, each optional"),
			named("flow", tAnyObject, "{from, to, protocol, port}: ends as namespace/pod (pod/namespace/pod for a namespace named node), node/NAME or an IP address; protocol defaults to TCP"),
		), named("decision", tAnyObject, "{allowed, egress: {outcome, rule, policies}, ingress: {outcome, rule, policies}, notes, reasons}")),
		impl: decide,
	},
	{
		name: "podwall.snapshot_errors",
		desc: "Returns why podwall.decide would refuse a cluster snapshot: one message per object that does not decode or that the API server would reject (a policy stored before stricter validation, say), naming the object and field. Empty when decide would decide. Lets a rule fail closed by itself where decide's error would end the whole query.",
		decl: types.NewFunction(types.Args(
			named("snapshot", tAnyObject, "{namespaces, pods, policies, nodes, services}: arrays of Kubernetes objects, each optional"),
		), named("errors", types.NewArray(nil, types.S), "one message per refused object")),
		impl: snapshotErrors,
	},
	{
		name: "podwall.is_default_deny",
		desc: "Reports whether a NetworkPolicy, after the API server's defaulting, denies everything in a direction for every pod of its namespace (empty podSelector, the direction among its policyTypes, no rules for it). An invalid policy is an error.",
		decl: types.NewFunction(types.Args(
			named("policy", tAnyObject, "a networking/v1 NetworkPolicy"),
			named("direction", types.S, "ingress or egress"),
		), named("default_deny", types.B, "true for a default deny in that direction")),
		impl: isDefaultDeny,
	},
	{
		name: "podwall.allow_all_rules",
		desc: "Returns the indexes of a NetworkPolicy's rules in a direction that allow every peer on every port and protocol. Rules of a direction the policy does not isolate are ignored, as the API ignores them. An invalid policy is an error.",
		decl: types.NewFunction(types.Args(
			named("policy", tAnyObject, "a networking/v1 NetworkPolicy"),
			named("direction", types.S, "ingress or egress"),
		), named("indexes", types.NewArray(nil, types.N), "indexes into spec.ingress or spec.egress")),
		impl: allowAllRules,
	},
	{
		name: "podwall.lint",
		desc: "Lints a snapshot's NetworkPolicies as podwall lint does: errors for what the API server would reject, warnings for what is legal but almost certainly wrong.",
		decl: types.NewFunction(types.Args(
			named("snapshot", tAnyObject, "{namespaces, pods, policies, nodes, services}: arrays of Kubernetes objects, each optional"),
		), named("findings", types.NewArray(nil, tAnyObject), "[{severity, code, policy: {namespace, name}, field, message}], sorted by policy then field")),
		impl: lint,
	},
}

// Functions returns rego options that add every podwall built-in to one
// rego.Rego, without touching OPA's global tables.
func Functions() []func(*rego.Rego) {
	out := make([]func(*rego.Rego), 0, len(builtinTable))
	for _, b := range builtinTable {
		out = append(out, rego.FunctionDyn(b.function(), b.impl))
	}
	return out
}

// Declarations returns the declarations of the podwall built-ins, for a
// compiler or a capabilities set. Each call returns fresh values.
func Declarations() []*ast.Builtin {
	out := make([]*ast.Builtin, 0, len(builtinTable))
	for _, b := range builtinTable {
		out = append(out, b.astBuiltin())
	}
	return out
}

// Capabilities returns OPA's capabilities for this version with the podwall
// built-ins added, whether or not they are registered globally.
func Capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return strings.HasPrefix(b.Name, BuiltinPrefix) })
	c.Builtins = append(c.Builtins, Declarations()...)
	return c
}

// StockCapabilities returns OPA's capabilities for this version without any
// podwall built-in: what a stock OPA of the same version accepts.
func StockCapabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return strings.HasPrefix(b.Name, BuiltinPrefix) })
	return c
}

var registerOnce sync.Once

// RegisterGlobal adds the podwall built-ins to OPA's global tables
// (ast.RegisterBuiltin and topdown.RegisterBuiltinFunc), so every compiler
// and evaluator in the process knows them: what OPA's command line needs.
// It is idempotent. Call it before any compiler is built, as OPA's global
// tables are not safe to change concurrently with compilation.
func RegisterGlobal() {
	registerOnce.Do(func() {
		for _, b := range builtinTable {
			ast.RegisterBuiltin(b.astBuiltin())
			impl := b.impl
			topdown.RegisterBuiltinFunc(b.name, func(bctx topdown.BuiltinContext, args []*ast.Term, iter func(*ast.Term) error) error {
				t, err := impl(bctx, args)
				if err != nil {
					return err // topdown prefixes the name and marks it a built-in error
				}
				return iter(t)
			})
		}
	})
}
