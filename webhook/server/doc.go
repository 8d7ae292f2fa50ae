// Package server runs podwall's admission webhook: validating and mutating
// handlers wrapping a [rules.Evaluator], served over HTTPS by
// controller-runtime's webhook server (certificates reloaded when they
// rotate), with the rules reading the cluster from an informer cache, the
// configuration file reloaded when it changes, health and readiness
// endpoints, Prometheus metrics and the optional default-deny generator.
//
// The pieces are usable on their own: [Validator] and [Mutator] are
// admission.Handlers over any [rules.Cluster], [NewHTTPHandler] serves one
// over HTTP with podwall's input limits, [ConfigWatcher] keeps an evaluator
// in step with a file, and [CacheCluster] implements [rules.Cluster] over a
// controller-runtime cache. [Server] wires them together as `podwall
// webhook` runs them.
package server
