package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate returns every problem with the configuration, joined with
// errors.Join; each is a *field.Error naming its field (for example
// "rules.requiredLabels.labels[0].default"). Omitted fields are valid, as
// their defaults are; Validate does not change c.
func (c *AdmissionConfiguration) Validate() error {
	if c == nil {
		return errors.New("no configuration")
	}
	var errs field.ErrorList
	for _, f := range []struct{ name, got, want string }{{"apiVersion", c.APIVersion, APIVersion}, {"kind", c.Kind, Kind}} {
		switch f.got {
		case f.want:
		case "":
			errs = append(errs, field.Required(field.NewPath(f.name), "must be "+f.want))
		default:
			errs = append(errs, field.NotSupported(field.NewPath(f.name), f.got, []string{f.want}))
		}
	}
	errs = append(errs, validateNamespaces(c.ExemptNamespaces, field.NewPath("exemptNamespaces"))...)
	rules := field.NewPath("rules")
	if r := c.Rules.RequiredLabels; r != nil {
		path := rules.Child(RuleRequiredLabels)
		errs = append(errs, r.Common.validate(RuleRequiredLabels, path)...)
		errs = append(errs, validateLabels(r.Labels, path.Child("labels"))...)
	}
	if r := c.Rules.DefaultDeny; r != nil {
		path := rules.Child(RuleDefaultDeny)
		errs = append(errs, r.Common.validate(RuleDefaultDeny, path)...)
		errs = append(errs, validatePolicyTypes(r.PolicyTypes, path.Child("policyTypes"))...)
		if r.PolicyName != "" { // "" is the default
			for _, msg := range content.IsDNS1123Subdomain(r.PolicyName) {
				errs = append(errs, field.Invalid(path.Child("policyName"), r.PolicyName, msg))
			}
		}
	}
	if r := c.Rules.NetworkPolicyHygiene; r != nil {
		errs = append(errs, r.Common.validate(RuleNetworkPolicyHygiene, rules.Child(RuleNetworkPolicyHygiene))...)
	}
	if r := c.Rules.ProtectedAccess; r != nil {
		path := rules.Child(RuleProtectedAccess)
		errs = append(errs, r.Common.validate(RuleProtectedAccess, path)...)
		if r.Engine == EngineGo {
			errs = append(errs, field.NotSupported(path.Child("engine"), r.Engine, []Engine{EngineRego}))
		}
		if r.ProtectedSelector == nil {
			errs = append(errs, field.Required(path.Child("protectedSelector"), "selects the protected pods"))
		}
		errs = append(errs, validateSelector(r.ProtectedSelector, path.Child("protectedSelector"))...)
		errs = append(errs, metav1validation.ValidateLabels(r.RequiredPeerLabels, path.Child("requiredPeerLabels"))...)
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

func (c *Common) validate(rule string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch c.EnforcementAction {
	case "", Deny, Warn, DryRun: // "" is the default, deny
	default:
		errs = append(errs, field.NotSupported(path.Child("enforcementAction"), c.EnforcementAction, []EnforcementAction{Deny, Warn, DryRun}))
	}
	switch c.Engine {
	case "", EngineGo, EngineRego: // "" is the default, go
	default:
		errs = append(errs, field.NotSupported(path.Child("engine"), c.Engine, []Engine{EngineGo, EngineRego}))
	}
	m := path.Child("match")
	if c.Match.Kinds != nil && len(c.Match.Kinds) == 0 {
		errs = append(errs, field.Required(m.Child("kinds"), "an empty list matches nothing: omit it for every kind the rule checks, or remove the rule"))
	}
	seen := map[string]bool{}
	for i, k := range c.Match.Kinds {
		p := m.Child("kinds").Index(i)
		switch {
		case seen[k]:
			errs = append(errs, field.Duplicate(p, k))
		case !slices.Contains(allKinds, k):
			errs = append(errs, field.NotSupported(p, k, ruleKinds[rule]))
		case !slices.Contains(ruleKinds[rule], k):
			errs = append(errs, field.Invalid(p, k, fmt.Sprintf("%s does not check %s objects; it checks %s", rule, k, strings.Join(ruleKinds[rule], ", "))))
		}
		seen[k] = true
	}
	errs = append(errs, validateNamespaces(c.Match.Namespaces, m.Child("namespaces"))...)
	errs = append(errs, validateNamespaces(c.Match.ExcludedNamespaces, m.Child("excludedNamespaces"))...)
	errs = append(errs, validateSelector(c.Match.NamespaceSelector, m.Child("namespaceSelector"))...)
	errs = append(errs, validateSelector(c.Match.ObjectSelector, m.Child("objectSelector"))...)
	return errs
}

func validateSelector(ls *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if ls == nil {
		return nil
	}
	return metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, path)
}

func validateNamespaces(names []string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, n := range names {
		p := path.Index(i)
		if seen[n] {
			errs = append(errs, field.Duplicate(p, n))
			continue
		}
		seen[n] = true
		for _, msg := range content.IsDNS1123Label(n) {
			errs = append(errs, field.Invalid(p, n, msg))
		}
	}
	return errs
}

func validateLabels(labels []RequiredLabel, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(labels) == 0 {
		errs = append(errs, field.Required(path, "at least one label is required"))
	}
	keys := map[string]bool{}
	for i, l := range labels {
		p := path.Index(i)
		if keys[l.Key] {
			errs = append(errs, field.Duplicate(p.Child("key"), l.Key))
		}
		keys[l.Key] = true
		for _, msg := range content.IsLabelKey(l.Key) {
			errs = append(errs, field.Invalid(p.Child("key"), l.Key, msg))
		}
		values := map[string]bool{}
		for j, v := range l.AllowedValues {
			vp := p.Child("allowedValues").Index(j)
			if values[v] {
				errs = append(errs, field.Duplicate(vp, v))
			}
			values[v] = true
			for _, msg := range content.IsLabelValue(v) {
				errs = append(errs, field.Invalid(vp, v, msg))
			}
		}
		if l.Default != nil {
			d := *l.Default
			msgs := content.IsLabelValue(d)
			for _, msg := range msgs {
				errs = append(errs, field.Invalid(p.Child("default"), d, msg))
			}
			if len(msgs) == 0 && !l.Allows(d) {
				errs = append(errs, field.NotSupported(p.Child("default"), d, l.AllowedValues))
			}
		}
	}
	return errs
}

func validatePolicyTypes(types []networkingv1.PolicyType, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range types {
		p := path.Index(i)
		switch {
		case seen[t]:
			errs = append(errs, field.Duplicate(p, t))
		case t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress:
			errs = append(errs, field.NotSupported(p, t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}))
		}
		seen[t] = true
	}
	return errs
}
