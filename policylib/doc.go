// Package policylib evaluates Kubernetes NetworkPolicy exactly as the API
// defines it: it validates and compiles policies once, then answers whether a
// flow is allowed and why, builds reachability matrices and lints policies.
//
// Input is the upstream types (networking/v1 NetworkPolicy, core/v1 Pod,
// Namespace, Node and Service). An [Engine] holds the compiled view of a
// cluster and takes incremental changes; [Engine.Decide] is the
// allocation-free hot path and [Engine.Explain] gives the reasons.
package policylib
