package server

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	crhandler "sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/rules"
)

// Labels and annotations podwall puts on the policies it generates.
const (
	ManagedByLabel      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "podwall"
	GeneratedAnnotation = "podwall.io/generated-by"
)

// Generator is the default-deny generator: when the configuration's
// rules.defaultDeny.generate is true, it creates the rule's default-deny
// NetworkPolicy in every namespace the rule matches that lacks a default
// deny for each of the rule's policyTypes, and creates it again if it is
// deleted while the namespace still matches.
//
// It only ever creates, and only when no policy of the namespace (whatever
// its name) already denies by default, so it cannot fight users or the
// admission rules: it never updates or deletes, a policy of the same name
// that is not a default deny is left alone (and logged), and the policy it
// creates is exactly the one the defaultDeny rule asks for, which the
// networkPolicyHygiene rule admits. Running it in several replicas at once
// is safe: the losers of a race get AlreadyExists, which is success.
type Generator struct {
	Client  client.Client // creates policies
	Cluster rules.Cluster // reads namespaces and policies (the cache)
	Rules   EvaluatorSource
	Log     logr.Logger

	trigger chan event.GenericEvent
}

// SetupWithManager registers the generator as a controller of mgr,
// reconciling a namespace when it or one of its NetworkPolicies changes,
// and every namespace when watcher loads a new configuration (nil: no
// reload trigger).
func (g *Generator) SetupWithManager(mgr ctrl.Manager, watcher *ConfigWatcher) error {
	if g.Log.GetSink() == nil {
		g.Log = mgr.GetLogger().WithName("defaultdeny-generator")
	}
	g.trigger = make(chan event.GenericEvent, 1024)
	if watcher != nil {
		watcher.OnChange(func(*rules.Evaluator) { g.requeueAll() })
	}
	byNamespace := crhandler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("podwall-defaultdeny").
		For(&corev1.Namespace{}).
		Watches(&networkingv1.NetworkPolicy{}, byNamespace).
		WatchesRawSource(source.Channel(g.trigger, &crhandler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 2}).
		Complete(g)
}

// requeueAll asks for every known namespace to be reconciled.
func (g *Generator) requeueAll() {
	lister, ok := g.Cluster.(rules.NamespaceLister)
	if !ok {
		return
	}
	for _, ns := range lister.Namespaces() {
		select {
		case g.trigger <- event.GenericEvent{Object: ns}:
		default:
			g.Log.Info("reconcile queue full; namespace will be reconciled on its next change", "namespace", ns.Name)
		}
	}
}

// Reconcile implements reconcile.Reconciler for one namespace.
func (g *Generator) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	e := g.Rules.Evaluator()
	if e == nil {
		return reconcile.Result{}, nil
	}
	dd := e.Config().Rules.DefaultDeny
	if dd == nil || !dd.Generate {
		return reconcile.Result{}, nil
	}
	ns, ok := g.Cluster.Namespace(req.Name)
	if !ok || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating || !e.Protects(ns) {
		return reconcile.Result{}, nil
	}
	want := e.DefaultDenyPolicy(ns.Name)
	if missing := missingDirections(g.Cluster.NetworkPolicies(ns.Name), want); len(missing) == 0 {
		return reconcile.Result{}, nil
	}
	np := want.DeepCopy()
	if np.Labels == nil {
		np.Labels = map[string]string{}
	}
	np.Labels[ManagedByLabel] = ManagedByValue
	np.Annotations = map[string]string{GeneratedAnnotation: "podwall default-deny generator (rules.defaultDeny.generate)"}
	log := g.Log.WithValues("namespace", ns.Name, "policy", np.Name)
	err := g.Client.Create(ctx, np)
	switch {
	case err == nil:
		generated.WithLabelValues("created").Inc()
		log.Info("created the default-deny NetworkPolicy", "policyTypes", np.Spec.PolicyTypes)
		return reconcile.Result{}, nil
	case apierrors.IsAlreadyExists(err):
		generated.WithLabelValues("exists").Inc()
		// Either the cache lags behind a create (ours or another
		// replica's) or a policy of that name is not a default deny: the
		// latter is the user's, never to be overwritten.
		cur := &networkingv1.NetworkPolicy{}
		if gerr := g.Client.Get(ctx, client.ObjectKeyFromObject(np), cur); gerr == nil && len(missingDirections([]*networkingv1.NetworkPolicy{cur}, want)) > 0 {
			log.Error(nil, "cannot generate the default-deny NetworkPolicy: a NetworkPolicy of that name exists and is not a default deny; rename it, or set rules.defaultDeny.policyName")
		}
		return reconcile.Result{}, nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return reconcile.Result{}, nil // namespace gone or going
	default:
		generated.WithLabelValues("error").Inc()
		return reconcile.Result{}, fmt.Errorf("creating NetworkPolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
}

// missingDirections returns the directions of want that no policy denies
// by default.
func missingDirections(policies []*networkingv1.NetworkPolicy, want *networkingv1.NetworkPolicy) []policylib.Direction {
	var missing []policylib.Direction
	for _, t := range want.Spec.PolicyTypes {
		dir := policylib.Ingress
		if t == networkingv1.PolicyTypeEgress {
			dir = policylib.Egress
		}
		found := false
		for _, np := range policies {
			if np != nil && np.DeletionTimestamp == nil && policylib.IsDefaultDeny(np, dir) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, dir)
		}
	}
	return missing
}
