// Package config defines podwall's versioned admission configuration file and
// validates it.
//
// A configuration is a YAML (or JSON) document of apiVersion
// podwall.io/v1alpha1, kind AdmissionConfiguration. It lists the namespaces
// exempt from every rule and configures up to four rules, each with a match
// (kinds, namespaces, namespaceSelector, objectSelector), an enforcement
// action (deny, warn or dryrun) and the engine that evaluates it: go (the
// default, podwall's Go rules) or rego (the Rego bundle, which the webhook
// runs too; protectedAccess has only that engine):
//
//	apiVersion: podwall.io/v1alpha1
//	kind: AdmissionConfiguration
//	exemptNamespaces: [kube-system, podwall-system]
//	rules:
//	  requiredLabels:
//	    enforcementAction: deny
//	    labels:
//	    - key: access
//	      allowedValues: ["true", "false"]
//	      default: "false"
//	  defaultDeny:
//	    match:
//	      namespaceSelector:
//	        matchLabels: {podwall.io/protected: "true"}
//	    policyTypes: [Ingress]
//	  networkPolicyHygiene: {}
//
// A rule that is omitted is off. [Load] and [Parse] decode strictly (an
// unknown or duplicated field is an error), apply the defaults documented on
// each field and validate; [AdmissionConfiguration.Validate] reports every
// problem at once, each naming its field. testdata/podwall.yaml is the
// canonical, commented example.
package config
