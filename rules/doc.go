// Package rules ships podwall's admission rules as Rego and registers policylib as Rego built-ins.
//
// The Rego sources live under podwall/ in this directory and are embedded
// in the package; [Bundle] packages them the way `opa build` does, and
// [Evaluator] prepares the admission queries once and evaluates
// AdmissionRequests against them. [Functions] adds the podwall.* built-ins
// to one rego.Rego; [RegisterGlobal] adds them to OPA's global tables, for
// OPA's own command line (`podwall opa`). README.md documents the built-ins,
// the input and data contract, and which rules need the built-ins.
package rules
