// Package rules evaluates podwall's admission rules on policylib.
//
// The core is pure and independent of HTTP: an [Evaluator], built once from
// a [config.AdmissionConfiguration] with every selector compiled, takes an
// admission request and a read-only view of the cluster ([Cluster]) and
// returns a [Result]: whether to admit, the violations found (for audit),
// the warnings to return and, from [Evaluator.Mutate], the JSON patches to
// apply. The webhook server backs [Cluster] with an informer cache; the
// offline `podwall check` and the tests use [MemoryCluster].
//
// Every NetworkPolicy question (is this a default deny, which rules allow
// everything, which label keys a policy selects on, is it valid, what does
// lint say) is answered by policylib.
package rules
