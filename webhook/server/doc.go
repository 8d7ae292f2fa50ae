// Package server runs podwall's admission webhook: validating and mutating
// handlers evaluating each rule with the engine its configuration names
// (the Go rules' [rules.Evaluator], or the Rego bundle through
// [RegoRules]), served over HTTPS by controller-runtime's webhook server
// (certificates reloaded when they rotate), with the rules reading the
// cluster from an informer cache, the configuration file and the Rego
// bundle reloaded when they change, health and readiness endpoints,
// Prometheus metrics and the optional default-deny generator.
//
// The pieces are usable on their own: [Validator] and [Mutator] are
// admission.Handlers over any [rules.Cluster], [NewHTTPHandler] serves one
// over HTTP with podwall's input limits, [ConfigWatcher] keeps an evaluator
// (and, WithRego, the Rego rules' configuration) in step with a file,
// [BundleWatcher] keeps the Rego rules' bundle in step with a file or
// directory, and [CacheCluster] implements [rules.Cluster] over a
// controller-runtime cache, which [RegoRules.AttachCluster] replicates into
// the bundle's data.kubernetes. [Server] wires them together as `podwall
// webhook` runs them.
package server
