package config

import (
	"maps"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion and Kind identify an admission configuration document.
const (
	APIVersion = "podwall.io/v1alpha1"
	Kind       = "AdmissionConfiguration"
)

// Rule names, as they appear under rules: and in violations.
const (
	RuleRequiredLabels       = "requiredLabels"
	RuleDefaultDeny          = "defaultDeny"
	RuleNetworkPolicyHygiene = "networkPolicyHygiene"
	RuleProtectedAccess      = "protectedAccess"
)

// DefaultPolicyName is the name of the default-deny NetworkPolicy when
// rules.defaultDeny.policyName is omitted.
const DefaultPolicyName = "default-deny"

// DefaultExemptNamespaces returns the namespaces exempt from every rule when
// exemptNamespaces is omitted: the control plane's and podwall's own, so the
// webhook can never lock out the components it depends on.
func DefaultExemptNamespaces() []string { return []string{"kube-system", "podwall-system"} }

// Object kinds a rule can match, by their Kubernetes kind name.
const (
	KindPod           = "Pod"
	KindDeployment    = "Deployment"
	KindReplicaSet    = "ReplicaSet"
	KindStatefulSet   = "StatefulSet"
	KindDaemonSet     = "DaemonSet"
	KindJob           = "Job"
	KindCronJob       = "CronJob"
	KindNetworkPolicy = "NetworkPolicy"
)

// PodKinds returns Pod and the workload kinds whose pod templates the rules
// check: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and CronJob.
func PodKinds() []string {
	return []string{KindPod, KindDeployment, KindReplicaSet, KindStatefulSet, KindDaemonSet, KindJob, KindCronJob}
}

// EnforcementAction says what a rule does with a violation.
type EnforcementAction string

// Enforcement actions. The empty value defaults to Deny.
const (
	// Deny refuses the request with the violation's message.
	Deny EnforcementAction = "deny"
	// Warn admits the request and returns the message as an admission
	// warning, which kubectl prints.
	Warn EnforcementAction = "warn"
	// DryRun admits the request silently; the violation is only recorded
	// (for audit logs and metrics).
	DryRun EnforcementAction = "dryrun"
)

// Engine names the evaluator of a rule.
type Engine string

// Engines. The empty value defaults to EngineGo.
const (
	// EngineGo evaluates the rule with podwall's Go rules on policylib.
	EngineGo Engine = "go"
	// EngineRego evaluates the rule with the Rego bundle; the Go evaluator
	// leaves such rules alone.
	EngineRego Engine = "rego"
)

// AdmissionConfiguration is the whole configuration file. The zero value,
// defaulted, has no rules and exempts DefaultExemptNamespaces.
type AdmissionConfiguration struct {
	// TypeMeta must be apiVersion podwall.io/v1alpha1, kind
	// AdmissionConfiguration.
	metav1.TypeMeta `json:",inline"`

	// ExemptNamespaces are never checked by any rule. Omitted: kube-system
	// and podwall-system; an explicit empty list exempts none.
	ExemptNamespaces []string `json:"exemptNamespaces"`

	// Rules configures each rule; a rule left out is off.
	Rules Rules `json:"rules"`
}

// Rules holds the configuration of each rule; nil means the rule is off.
type Rules struct {
	// RequiredLabels makes Pods and pod templates carry labels with allowed
	// values, adding defaults where a label is missing.
	RequiredLabels *RequiredLabelsRule `json:"requiredLabels,omitempty"`
	// DefaultDeny makes matched namespaces hold a default-deny
	// NetworkPolicy before pods can be created there, and keeps the last
	// one from being deleted or weakened.
	DefaultDeny *DefaultDenyRule `json:"defaultDeny,omitempty"`
	// NetworkPolicyHygiene validates and lints NetworkPolicies as they are
	// created and updated.
	NetworkPolicyHygiene *NetworkPolicyHygieneRule `json:"networkPolicyHygiene,omitempty"`
	// ProtectedAccess denies NetworkPolicy changes that would open protected
	// pods to pods lacking the required peer labels. Only the Rego engine
	// implements it: it decides flows with the podwall.decide built-in.
	ProtectedAccess *ProtectedAccessRule `json:"protectedAccess,omitempty"`
}

// ProtectedAccessRule names the protected pods and the labels a peer needs.
type ProtectedAccessRule struct {
	Common `json:",inline"`
	// ProtectedSelector selects the protected pods in each namespace, e.g.
	// {matchLabels: {name: networkpolicy-demo}}. Required.
	ProtectedSelector *metav1.LabelSelector `json:"protectedSelector"`
	// RequiredPeerLabels are the labels a pod must carry to reach protected
	// pods. Default {access: "true"}.
	RequiredPeerLabels map[string]string `json:"requiredPeerLabels,omitempty"`
}

// Common is what every rule has.
type Common struct {
	// EnforcementAction is deny (the default), warn or dryrun.
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`
	// Engine is go (the default) or rego.
	Engine Engine `json:"engine,omitempty"`
	// Match selects the objects the rule checks.
	Match Match `json:"match,omitempty"`
}

// Match selects objects. All given conditions must hold; namespaces in the
// configuration's exemptNamespaces never match.
type Match struct {
	// Kinds are the object kinds checked (e.g. Pod, Deployment,
	// NetworkPolicy). Omitted: every kind the rule can check.
	Kinds []string `json:"kinds,omitempty"`
	// Namespaces, when given, limits the rule to these namespaces.
	Namespaces []string `json:"namespaces,omitempty"`
	// ExcludedNamespaces are exempt from this rule, in addition to
	// exemptNamespaces.
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// NamespaceSelector selects by the labels of the object's namespace
	// (kubernetes.io/metadata.name included). Omitted: every namespace.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// ObjectSelector selects by the object's own labels (not its pod
	// template's). On UPDATE it matches when the old or the new object
	// matches, as for Kubernetes webhooks. Omitted: every object.
	ObjectSelector *metav1.LabelSelector `json:"objectSelector,omitempty"`
}

// RequiredLabelsRule makes Pods, and the pod templates of Deployments,
// ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs, carry labels
// with allowed values. The mutating side adds a label's default where the
// label is missing (on CREATE); the validating side denies what is still
// missing or has a value that is not allowed. On UPDATE only violations the
// update introduces are enforced, so existing objects stay manageable.
type RequiredLabelsRule struct {
	Common `json:",inline"`
	// Labels are the required labels; at least one.
	Labels []RequiredLabel `json:"labels"`
}

// RequiredLabel is one required label.
type RequiredLabel struct {
	// Key is the label key, e.g. access or example.com/tier.
	Key string `json:"key"`
	// AllowedValues are the values the label may have. Omitted: any value,
	// as long as the label is present.
	AllowedValues []string `json:"allowedValues,omitempty"`
	// Default, when set, is added by the mutating webhook where the label
	// is missing. It must be one of AllowedValues.
	Default *string `json:"default,omitempty"`
}

// Allows reports whether v is an allowed value of the label.
func (l *RequiredLabel) Allows(v string) bool {
	return len(l.AllowedValues) == 0 || slices.Contains(l.AllowedValues, v)
}

// DefaultDenyRule makes every matched namespace hold a default-deny
// NetworkPolicy (every pod selected, no rule) for each of PolicyTypes:
// creating a Pod or workload in a matched namespace without one is refused
// with the policy to apply, and deleting or weakening the last one is
// refused. Match.Kinds may include NetworkPolicy (the protection of the last
// default deny) and Pod and workload kinds (the creation check); all by
// default.
type DefaultDenyRule struct {
	Common `json:",inline"`
	// PolicyTypes are the directions that must be denied by default:
	// Ingress, Egress or both. Omitted: [Ingress].
	PolicyTypes []networkingv1.PolicyType `json:"policyTypes,omitempty"`
	// PolicyName names the default-deny policy podwall suggests (and
	// generates). Omitted: default-deny.
	PolicyName string `json:"policyName,omitempty"`
	// Generate asks podwall's controller to create the policy in every
	// matched namespace that lacks one.
	Generate bool `json:"generate,omitempty"`
}

// Policy returns the default-deny NetworkPolicy the rule requires in
// namespace: named PolicyName, selecting every pod, isolating PolicyTypes
// and allowing nothing. Omitted fields take their defaults.
func (r *DefaultDenyRule) Policy(namespace string) *networkingv1.NetworkPolicy {
	name := r.PolicyName
	if name == "" {
		name = DefaultPolicyName
	}
	types := slices.Clone(r.PolicyTypes)
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: KindNetworkPolicy},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: types,
		},
	}
}

// NetworkPolicyHygieneRule validates and lints NetworkPolicies on CREATE and
// UPDATE: what the API server would reject is denied with its field path;
// ingress from 0.0.0.0/0 or ::/0 is denied in every matched namespace, and
// allow-all ingress in protected namespaces (those the defaultDeny rule
// matches), each when enabled; lint warnings are returned as admission
// warnings.
type NetworkPolicyHygieneRule struct {
	Common `json:",inline"`
	// DenyIngressFromAnywhere denies ingress rules with an ipBlock of
	// 0.0.0.0/0 or ::/0 (lint code ingress-from-anywhere). Default true.
	DenyIngressFromAnywhere *bool `json:"denyIngressFromAnywhere,omitempty"`
	// DenyAllowAllIngressInProtected denies ingress rules that allow every
	// peer on every port in namespaces the defaultDeny rule protects, since
	// they void the default deny. Default true.
	DenyAllowAllIngressInProtected *bool `json:"denyAllowAllIngressInProtected,omitempty"`
	// LintWarnings returns policylib's lint warnings (selects-no-pods,
	// named-port-not-exposed, service-port-not-target, ...) as admission
	// warnings. Default true.
	LintWarnings *bool `json:"lintWarnings,omitempty"`
}

// DeniesIngressFromAnywhere reports DenyIngressFromAnywhere, true when unset.
func (r *NetworkPolicyHygieneRule) DeniesIngressFromAnywhere() bool {
	return boolOr(r.DenyIngressFromAnywhere, true)
}

// DeniesAllowAllIngressInProtected reports DenyAllowAllIngressInProtected,
// true when unset.
func (r *NetworkPolicyHygieneRule) DeniesAllowAllIngressInProtected() bool {
	return boolOr(r.DenyAllowAllIngressInProtected, true)
}

// WantsLintWarnings reports LintWarnings, true when unset.
func (r *NetworkPolicyHygieneRule) WantsLintWarnings() bool { return boolOr(r.LintWarnings, true) }

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// ruleKinds are the kinds each rule can check; the first list is also its
// default.
var ruleKinds = map[string][]string{
	RuleRequiredLabels:       PodKinds(),
	RuleDefaultDeny:          append(PodKinds(), KindNetworkPolicy),
	RuleNetworkPolicyHygiene: {KindNetworkPolicy},
	RuleProtectedAccess:      {KindNetworkPolicy},
}

// allKinds is every kind any rule checks.
var allKinds = append(PodKinds(), KindNetworkPolicy)

// Default fills every omitted field with its documented default. It is
// idempotent; Load and Parse call it.
func (c *AdmissionConfiguration) Default() {
	if c.ExemptNamespaces == nil {
		c.ExemptNamespaces = DefaultExemptNamespaces()
	}
	if r := c.Rules.RequiredLabels; r != nil {
		r.Common.defaults(RuleRequiredLabels)
	}
	if r := c.Rules.DefaultDeny; r != nil {
		r.Common.defaults(RuleDefaultDeny)
		if len(r.PolicyTypes) == 0 {
			r.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		}
		if r.PolicyName == "" {
			r.PolicyName = DefaultPolicyName
		}
	}
	if r := c.Rules.ProtectedAccess; r != nil {
		r.defaults()
	}
	if r := c.Rules.NetworkPolicyHygiene; r != nil {
		r.Common.defaults(RuleNetworkPolicyHygiene)
		for _, p := range []**bool{&r.DenyIngressFromAnywhere, &r.DenyAllowAllIngressInProtected, &r.LintWarnings} {
			if *p == nil {
				t := true
				*p = &t
			}
		}
	}
}

func (r *ProtectedAccessRule) defaults() {
	if r.Engine == "" {
		r.Engine = EngineRego // the only engine that implements it
	}
	r.Common.defaults(RuleProtectedAccess)
	if r.RequiredPeerLabels == nil {
		r.RequiredPeerLabels = map[string]string{"access": "true"}
	}
}

func (c *Common) defaults(rule string) {
	if c.EnforcementAction == "" {
		c.EnforcementAction = Deny
	}
	if c.Engine == "" {
		c.Engine = EngineGo
	}
	if c.Match.Kinds == nil {
		c.Match.Kinds = slices.Clone(ruleKinds[rule])
	}
}

// DeepCopy returns a copy sharing nothing with c.
func (c *AdmissionConfiguration) DeepCopy() *AdmissionConfiguration {
	if c == nil {
		return nil
	}
	out := *c
	out.ExemptNamespaces = slices.Clone(c.ExemptNamespaces)
	if r := c.Rules.RequiredLabels; r != nil {
		cp := *r
		cp.Common = r.Common.deepCopy()
		cp.Labels = make([]RequiredLabel, len(r.Labels))
		for i, l := range r.Labels {
			cp.Labels[i] = RequiredLabel{Key: l.Key, AllowedValues: slices.Clone(l.AllowedValues)}
			if l.Default != nil {
				d := *l.Default
				cp.Labels[i].Default = &d
			}
		}
		out.Rules.RequiredLabels = &cp
	}
	if r := c.Rules.DefaultDeny; r != nil {
		cp := *r
		cp.Common = r.Common.deepCopy()
		cp.PolicyTypes = slices.Clone(r.PolicyTypes)
		out.Rules.DefaultDeny = &cp
	}
	if r := c.Rules.NetworkPolicyHygiene; r != nil {
		cp := *r
		cp.Common = r.Common.deepCopy()
		cp.DenyIngressFromAnywhere = clonePtr(r.DenyIngressFromAnywhere)
		cp.DenyAllowAllIngressInProtected = clonePtr(r.DenyAllowAllIngressInProtected)
		cp.LintWarnings = clonePtr(r.LintWarnings)
		out.Rules.NetworkPolicyHygiene = &cp
	}
	if r := c.Rules.ProtectedAccess; r != nil {
		cp := *r
		cp.Common = r.Common.deepCopy()
		cp.ProtectedSelector = r.ProtectedSelector.DeepCopy()
		cp.RequiredPeerLabels = maps.Clone(r.RequiredPeerLabels)
		out.Rules.ProtectedAccess = &cp
	}
	return &out
}

func (c Common) deepCopy() Common {
	c.Match.Kinds = slices.Clone(c.Match.Kinds)
	c.Match.Namespaces = slices.Clone(c.Match.Namespaces)
	c.Match.ExcludedNamespaces = slices.Clone(c.Match.ExcludedNamespaces)
	c.Match.NamespaceSelector = c.Match.NamespaceSelector.DeepCopy()
	c.Match.ObjectSelector = c.Match.ObjectSelector.DeepCopy()
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
