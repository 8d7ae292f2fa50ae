package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
)

// RulePodwall is the rule name of violations that are no rule's finding:
// an object a rule matches but that cannot be decoded, a cancelled
// evaluation, an internal error.
const RulePodwall = "podwall"

// Violation codes. Lint findings keep policylib's codes (policylib.Code*).
const (
	CodeMissingLabel       = "missing-label"
	CodeLabelNotAllowed    = "label-value-not-allowed"
	CodeMissingDefaultDeny = "missing-default-deny"
	CodeLastDefaultDeny    = "last-default-deny"
	CodeAllowAllIngress    = "allow-all-ingress"
	CodeUndecodable        = "undecodable"
	CodeCancelled          = "cancelled"
	CodeInternal           = "internal-error"
)

// Violation is one finding of one rule about the object of a request.
type Violation struct {
	// Rule is the rule's name (config.RuleRequiredLabels, ...) or
	// RulePodwall.
	Rule string `json:"rule"`
	// Action is what was done about it: deny, warn or dryrun.
	Action config.EnforcementAction `json:"action"`
	// Code identifies the kind of finding, for scripts and metrics.
	Code string `json:"code"`
	// Message explains the finding and what to do. Its first line stands
	// alone; further lines (a policy to apply) add detail.
	Message string `json:"message"`
	// Field is the field path concerned in the object, when there is one.
	Field string `json:"field,omitempty"`
}

// Summary returns the first line of the message, without the colon that
// introduces the lines after it.
func (v Violation) Summary() string {
	s, _, more := strings.Cut(v.Message, "\n")
	if more {
		s = strings.TrimSuffix(s, ":")
	}
	return s
}

// Warning is the violation as an admission warning: "RULE: FIELD: SUMMARY",
// or "RULE: SUMMARY" without a field.
func (v Violation) Warning() string {
	if v.Field == "" {
		return v.Rule + ": " + v.Summary()
	}
	return v.Rule + ": " + v.Field + ": " + v.Summary()
}

// Result is the outcome of evaluating one request.
type Result struct {
	// Allowed is false when some violation's action is deny.
	Allowed bool `json:"allowed"`
	// Violations are every finding, whatever its action, for audit.
	Violations []Violation `json:"violations,omitempty"`
	// Warnings are the admission warnings to return: the findings of warn
	// rules, lint warnings, and notes about mutations.
	Warnings []string `json:"warnings,omitempty"`
	// Patches are the JSON patch operations to apply (Mutate only).
	Patches []jsonpatch.JsonPatchOperation `json:"patches,omitempty"`
}

// Message returns the denial message: the messages of the violations whose
// action is deny, one after the other. It is empty when Allowed.
func (r Result) Message() string {
	var msgs []string
	for _, v := range r.Violations {
		if v.Action == config.Deny {
			msgs = append(msgs, v.Message)
		}
	}
	return strings.Join(msgs, "\n")
}

// Evaluator evaluates the rules of one configuration. It is built once by
// New, with every selector compiled, and is safe for concurrent use.
type Evaluator struct {
	cfg       *config.AdmissionConfiguration
	exempt    map[string]bool
	labels    *requiredLabels
	deny      *defaultDeny
	hygiene   *hygiene
	protected *matcher // the defaultDeny rule's namespaces, whatever its engine
	rules     []string
}

// New validates cfg (after applying defaults to a copy, so cfg is not
// modified) and compiles it. Rules whose engine is rego are left to the
// Rego evaluator: the Evaluator skips them (see Rules), though the
// defaultDeny rule's match still defines the protected namespaces.
func New(cfg *config.AdmissionConfiguration) (*Evaluator, error) {
	if cfg == nil {
		return nil, errors.New("no configuration")
	}
	cfg = cfg.DeepCopy()
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, &config.Error{Errs: unjoin(err)}
	}
	e := &Evaluator{cfg: cfg, exempt: map[string]bool{}}
	for _, ns := range cfg.ExemptNamespaces {
		e.exempt[ns] = true
	}
	var err error
	if r := cfg.Rules.RequiredLabels; r != nil && r.Engine == config.EngineGo {
		if e.labels, err = newRequiredLabels(r, e.exempt); err != nil {
			return nil, err
		}
		e.rules = append(e.rules, config.RuleRequiredLabels)
	}
	if r := cfg.Rules.DefaultDeny; r != nil {
		if e.protected, err = compileMatch(&r.Match, e.exempt); err != nil {
			return nil, err
		}
		if r.Engine == config.EngineGo {
			e.deny = newDefaultDeny(r, e.protected)
			e.rules = append(e.rules, config.RuleDefaultDeny)
		}
	}
	if r := cfg.Rules.NetworkPolicyHygiene; r != nil && r.Engine == config.EngineGo {
		m, err := compileMatch(&r.Match, e.exempt)
		if err != nil {
			return nil, err
		}
		e.hygiene = &hygiene{cfg: r, match: m}
		e.rules = append(e.rules, config.RuleNetworkPolicyHygiene)
	}
	return e, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Config returns the defaulted configuration the evaluator was built from.
// It must not be modified.
func (e *Evaluator) Config() *config.AdmissionConfiguration { return e.cfg }

// Rules returns the names of the rules this evaluator evaluates: the
// configured rules whose engine is go.
func (e *Evaluator) Rules() []string { return append([]string(nil), e.rules...) }

// Protects reports whether the defaultDeny rule matches namespace ns, so it
// must hold a default-deny NetworkPolicy. It is false when the rule is off.
func (e *Evaluator) Protects(ns *corev1.Namespace) bool {
	if e.protected == nil || ns == nil {
		return false
	}
	return e.protected.matchNamespace(ns.Name, namespaceLabels(ns.Name, ns))
}

// DefaultDenyPolicy returns the default-deny NetworkPolicy the defaultDeny
// rule requires in namespace, or nil when the rule is off.
func (e *Evaluator) DefaultDenyPolicy(namespace string) *networkingv1.NetworkPolicy {
	if e.cfg.Rules.DefaultDeny == nil {
		return nil
	}
	return e.cfg.Rules.DefaultDeny.Policy(namespace)
}

// Validate evaluates the validating side of every rule on req against the
// cluster c. It never panics: a request it cannot make sense of for a rule
// that matches it is refused with the reason (or warned about, or
// recorded, as that rule's action says); requests no rule matches are
// allowed. A nil c is an empty cluster.
func (e *Evaluator) Validate(ctx context.Context, req *admissionv1.AdmissionRequest, c Cluster) Result {
	return e.run(ctx, req, c, false)
}

// Mutate evaluates the mutating side: on CREATE, the requiredLabels rule's
// defaults for missing labels, as JSON patches. It always allows; what it
// cannot fix is left for Validate to refuse. With a dryrun action nothing is
// patched and the would-be changes are recorded as violations.
func (e *Evaluator) Mutate(ctx context.Context, req *admissionv1.AdmissionRequest, c Cluster) Result {
	r := e.run(ctx, req, c, true)
	r.Allowed = true
	return r
}

func (e *Evaluator) run(ctx context.Context, req *admissionv1.AdmissionRequest, c Cluster, mutate bool) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{}
			res.add(Violation{Rule: RulePodwall, Action: config.Deny, Code: CodeInternal,
				Message: fmt.Sprintf("podwall: internal error evaluating the request: %v", p)})
			res.finish()
		}
	}()
	if ctx == nil {
		ctx = context.Background()
	}
	if c == nil {
		c = emptyCluster{}
	}
	if req == nil {
		res.add(Violation{Rule: RulePodwall, Action: config.Deny, Code: CodeUndecodable, Message: "podwall: no admission request"})
		res.finish()
		return res
	}
	ev := evaluation{e: e, ctx: ctx, req: req, c: c, mutate: mutate, res: &res}
	ev.run()
	res.finish()
	return res
}

func (r *Result) add(v Violation) { r.Violations = append(r.Violations, v) }

func (r *Result) warn(msg string) { r.Warnings = append(r.Warnings, msg) }

// finish sets Allowed and the warnings of warn violations.
func (r *Result) finish() {
	r.Allowed = true
	for _, v := range r.Violations {
		switch v.Action {
		case config.Deny:
			r.Allowed = false
		case config.Warn:
			r.Warnings = append(r.Warnings, v.Warning())
		}
	}
}

// strongest orders actions: deny over warn over dryrun.
func strongest(a, b config.EnforcementAction) config.EnforcementAction {
	rank := func(x config.EnforcementAction) int {
		switch x {
		case config.Deny:
			return 3
		case config.Warn:
			return 2
		case config.DryRun:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// namespaceLabels returns the labels selectors see on a namespace: its own,
// plus kubernetes.io/metadata.name as the API server guarantees. It
// allocates only when the name label is missing (an offline namespace, or
// one the cluster does not know).
func namespaceLabels(name string, ns *corev1.Namespace) map[string]string {
	if ns != nil && ns.Labels[policylib.NamespaceNameLabel] == name {
		return ns.Labels
	}
	out := make(map[string]string, 1)
	if ns != nil {
		for k, v := range ns.Labels {
			out[k] = v
		}
	}
	out[policylib.NamespaceNameLabel] = name
	return out
}
