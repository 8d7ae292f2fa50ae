package policylib

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DefaultPolicy returns a copy of np with the API server's defaults applied:
// policyTypes is Ingress, plus Egress when egress rules are given; a port's
// protocol is TCP. The input is not modified.
func DefaultPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	out := np.DeepCopy()
	if len(out.Spec.PolicyTypes) == 0 {
		out.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		// An empty egress list does not isolate egress: only a non-empty
		// one (or an explicit policyTypes) does.
		if len(out.Spec.Egress) > 0 {
			out.Spec.PolicyTypes = append(out.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	tcp := corev1.ProtocolTCP
	for i := range out.Spec.Ingress {
		for j := range out.Spec.Ingress[i].Ports {
			if out.Spec.Ingress[i].Ports[j].Protocol == nil {
				out.Spec.Ingress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	for i := range out.Spec.Egress {
		for j := range out.Spec.Egress[i].Ports {
			if out.Spec.Egress[i].Ports[j].Protocol == nil {
				out.Spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	return out
}

// ValidatePolicy returns every problem the API server would reject np for,
// each with its field path (for example
// "spec.ingress[0].from[1].ipBlock.except[0]"). It validates np as given;
// defaulting does not change what is valid.
func ValidatePolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&np.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	spec := field.NewPath("spec")
	allErrs = append(allErrs, validateSelector(&np.Spec.PodSelector, spec.Child("podSelector"))...)
	for i, rule := range np.Spec.Ingress {
		path := spec.Child("ingress").Index(i)
		for j := range rule.Ports {
			allErrs = append(allErrs, validatePort(&rule.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range rule.From {
			allErrs = append(allErrs, validatePeer(&rule.From[j], path.Child("from").Index(j))...)
		}
	}
	for i, rule := range np.Spec.Egress {
		path := spec.Child("egress").Index(i)
		for j := range rule.Ports {
			allErrs = append(allErrs, validatePort(&rule.Ports[j], path.Child("ports").Index(j))...)
		}
		for j := range rule.To {
			allErrs = append(allErrs, validatePeer(&rule.To[j], path.Child("to").Index(j))...)
		}
	}
	// As upstream: more than two is one error and ends the check; a
	// repeated type is accepted (the API server does not reject it).
	allowed := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
	if len(np.Spec.PolicyTypes) > len(allowed) {
		return append(allErrs, field.Invalid(spec.Child("policyTypes"), np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, pt := range np.Spec.PolicyTypes {
		if pt != networkingv1.PolicyTypeIngress && pt != networkingv1.PolicyTypeEgress {
			allErrs = append(allErrs, field.NotSupported(spec.Child("policyTypes").Index(i), pt, allowed))
		}
	}
	return allErrs
}

func validatePort(port *networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if _, ok := protocolFromAPI(port.Protocol); !ok {
		allErrs = append(allErrs, field.NotSupported(path.Child("protocol"), *port.Protocol,
			[]string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			allErrs = append(allErrs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
			allErrs = append(allErrs, field.Invalid(path.Child("port"), port.Port.IntVal, msg))
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				allErrs = append(allErrs, field.Invalid(path.Child("endPort"), port.Port.IntVal, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
				allErrs = append(allErrs, field.Invalid(path.Child("endPort"), *port.EndPort, msg))
			}
		}
	default:
		if port.EndPort != nil {
			allErrs = append(allErrs, field.Invalid(path.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			allErrs = append(allErrs, field.Invalid(path.Child("port"), port.Port.StrVal, msg))
		}
	}
	return allErrs
}

func validatePeer(peer *networkingv1.NetworkPolicyPeer, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	n := 0
	if peer.PodSelector != nil {
		n++
		allErrs = append(allErrs, validateSelector(peer.PodSelector, path.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		allErrs = append(allErrs, validateSelector(peer.NamespaceSelector, path.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		allErrs = append(allErrs, validateIPBlock(peer.IPBlock, path.Child("ipBlock"))...)
	}
	switch {
	case n == 0:
		allErrs = append(allErrs, field.Required(path, "must specify a peer"))
	case n > 1 && peer.IPBlock != nil:
		allErrs = append(allErrs, field.Forbidden(path, "may not specify both ipBlock and another peer"))
	}
	return allErrs
}

// validateIPBlock applies the API server's strict CIDR validation (the
// StrictIPCIDRValidation behaviour): no leading zeros, no IPv4-mapped IPv6,
// no bits set beyond the prefix length, and every except strictly inside cidr.
func validateIPBlock(b *networkingv1.IPBlock, path *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	allErrs := validation.IsValidCIDRForLegacyField(path.Child("cidr"), b.CIDR, true, nil)
	cidr, cidrErr := parsePrefix(b.CIDR)
	for i, ex := range b.Except {
		exPath := path.Child("except").Index(i)
		errs := validation.IsValidCIDRForLegacyField(exPath, ex, true, nil)
		allErrs = append(allErrs, errs...)
		if len(errs) > 0 || cidrErr != nil {
			continue
		}
		exPrefix, err := parsePrefix(ex)
		if err != nil {
			continue
		}
		if exPrefix.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(exPrefix.Addr()) || exPrefix.Bits() <= cidr.Bits() {
			allErrs = append(allErrs, field.Invalid(exPath, ex, fmt.Sprintf("must be a strict subset of `cidr` (%s)", b.CIDR)))
		}
	}
	return allErrs
}

// ValidateService returns every problem the API server would reject svc for
// in what the engine reads of it: each port's number, protocol, targetPort
// and nodePort, with its field path (for example
// "spec.ports[0].targetPort").
func ValidateService(svc *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	ports := field.NewPath("spec", "ports")
	for i, p := range svc.Spec.Ports {
		path := ports.Index(i)
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(path.Child("port"), p.Port, msg))
		}
		switch p.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(path.Child("protocol"), p.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		switch t := p.TargetPort; {
		case t.Type == intstr.String:
			for _, msg := range validation.IsValidPortName(t.StrVal) {
				errs = append(errs, field.Invalid(path.Child("targetPort"), t.StrVal, msg))
			}
		case t.IntVal != 0: // 0: unset, the port itself
			for _, msg := range validation.IsValidPortNum(int(t.IntVal)) {
				errs = append(errs, field.Invalid(path.Child("targetPort"), t.IntVal, msg))
			}
		}
		if p.NodePort != 0 {
			for _, msg := range validation.IsValidPortNum(int(p.NodePort)) {
				errs = append(errs, field.Invalid(path.Child("nodePort"), p.NodePort, msg))
			}
		}
	}
	return errs
}
