package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

func init() { register(newAuditCmd) }

func newAuditCmd(e *env) *cobra.Command {
	var (
		kube        kubeFlags
		configPath  string
		cmNamespace string
		namespace   string
		output      string
		bundlePath  string
	)
	cmd := &cobra.Command{
		Use:   "audit [--config FILE]",
		Short: "Apply the admission webhook's rules to a live cluster's existing objects",
		Long: `audit applies podwall's admission rules to what already exists in a cluster,
which the webhook only judges when it changes: every Pod, workload
(Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) and
NetworkPolicy is evaluated as a CREATE against the cluster as it is, exactly
as the webhook would evaluate it. Findings are printed like podwall check's.

Objects controlled by another object podwall checks (a ReplicaSet of a
Deployment, the pods of a ReplicaSet, Job, StatefulSet or DaemonSet, the Jobs
of a CronJob) are not reported separately: their controller is. A namespace
the defaultDeny rule protects that has no default deny is reported once, as
the Namespace, rather than once per pod.

The rules come from --config, else from the ConfigMap the webhook mounts
(podwall-config, key podwall.yaml, in --config-namespace). The cluster is
reached with --kubeconfig, else $KUBECONFIG, else the in-cluster service
account, else ~/.kube/config; audit only reads (get, list).

Exit status: 1 when a finding's action is deny, 0 otherwise, 2 on bad input,
a bad configuration or an unreachable cluster.`,
		Example: `  podwall audit --config podwall.yaml
  podwall audit --kubeconfig ~/.kube/config -n shop -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(cmd, output); err != nil {
				return err
			}
			// A configuration file (and bundle) is read before the cluster
			// is reached, so that a mistake there is reported as such.
			var ar *admissionRules
			if configPath != "" {
				var err error
				if ar, err = auditRules(cmd.Context(), nil, configPath, cmNamespace, bundlePath); err != nil {
					return err
				}
			}
			cfg, err := kube.restConfig()
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
			if err != nil {
				return fmt.Errorf("connecting to the Kubernetes API: %w", err)
			}
			if ar == nil {
				if ar, err = auditRules(cmd.Context(), c, configPath, cmNamespace, bundlePath); err != nil {
					return err
				}
			}
			findings, objects, err := auditCluster(cmd, c, ar, namespace)
			if err != nil {
				return err
			}
			if err := writeCheck(e, output, findings, objects); err != nil {
				return err
			}
			if slices.ContainsFunc(findings, func(f checkFinding) bool { return f.Action == string(config.Deny) }) {
				return exitStatus(exitFound)
			}
			return nil
		},
	}
	kube.add(cmd)
	cmd.Flags().StringVar(&configPath, "config", "", "admission configuration file (default: the podwall-config ConfigMap in --config-namespace)")
	cmd.Flags().StringVar(&cmNamespace, "config-namespace", "podwall-system", "namespace of the podwall-config ConfigMap, when --config is not given")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "audit only this namespace (default: every namespace)")
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "OPA bundle (tar.gz or directory) for the rules whose engine is rego (default: the rules built into podwall)")
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// auditConfigMap names the ConfigMap deploy/webhook mounts.
const (
	auditConfigMap = "podwall-config"
	auditConfigKey = "podwall.yaml"
)

// auditRules loads the rules from path, or else from the webhook's
// ConfigMap through c (which may be nil when path is given).
func auditRules(ctx context.Context, c client.Reader, path, cmNamespace, bundlePath string) (*admissionRules, error) {
	var cfg *config.AdmissionConfiguration
	var err error
	source := path
	if path != "" {
		cfg, err = config.Load(path)
	} else {
		source = "ConfigMap " + cmNamespace + "/" + auditConfigMap
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: cmNamespace, Name: auditConfigMap}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("no --config given and no %s: %w", source, err)
			}
			return nil, fmt.Errorf("reading %s: %w", source, err)
		}
		data, ok := cm.Data[auditConfigKey]
		if !ok {
			return nil, fmt.Errorf("%s has no key %s", source, auditConfigKey)
		}
		cfg, err = config.Parse([]byte(data), source)
	}
	if err != nil {
		return nil, err
	}
	return newAdmissionRules(ctx, source, cfg, bundlePath)
}

// auditLists are the lists audit reads: the cluster view first, then the
// checked workloads.
func auditLists() []client.ObjectList {
	return []client.ObjectList{
		&corev1.NamespaceList{}, &corev1.PodList{}, &corev1.ServiceList{}, &networkingv1.NetworkPolicyList{},
		&appsv1.DeploymentList{}, &appsv1.ReplicaSetList{}, &appsv1.StatefulSetList{}, &appsv1.DaemonSetList{},
		&batchv1.JobList{}, &batchv1.CronJobList{},
	}
}

// auditCluster reads the cluster through c and evaluates every checked
// object (of namespace, or all) as a CREATE. It returns the findings and
// the number of objects evaluated.
func auditCluster(cmd *cobra.Command, c client.Reader, ar *admissionRules, namespace string) ([]checkFinding, int, error) {
	ctx := cmd.Context()
	var all []runtime.Object
	for _, l := range auditLists() {
		items, err := listAll(ctx, c, l)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, items...)
	}
	cl := rules.NewMemoryCluster(all...)
	if namespace != "" && !slices.ContainsFunc(cl.Namespaces(), func(ns *corev1.Namespace) bool { return ns.Name == namespace }) {
		return nil, 0, flagError("-n/--namespace "+namespace, errors.New("no such namespace in the cluster"))
	}
	if err := ar.setCluster(ctx, all); err != nil {
		return nil, 0, err
	}
	ev := ar.goSide

	inScope := func(o metav1.Object) bool { return namespace == "" || o.GetNamespace() == namespace }
	var checked []manifest.Object
	for _, o := range all {
		m := o.(metav1.Object)
		if _, isNS := o.(*corev1.Namespace); isNS || !isChecked(o) || !inScope(m) || m.GetDeletionTimestamp() != nil || controlledByChecked(m) {
			continue
		}
		checked = append(checked, manifest.Object{Obj: o})
	}
	slices.SortStableFunc(checked, func(a, b manifest.Object) int {
		ma, mb := a.Obj.(metav1.Object), b.Obj.(metav1.Object)
		return cmp.Or(cmp.Compare(ma.GetNamespace(), mb.GetNamespace()), cmp.Compare(kindOf(a.Obj), kindOf(b.Obj)), cmp.Compare(ma.GetName(), mb.GetName()))
	})

	findings := []checkFinding{}
	// Protected namespaces without their default deny, once each, whichever
	// engine runs defaultDeny: which namespaces it protects and what their
	// policies are is the configuration's and the cluster's, and the
	// objects' own findings there (code missing-default-deny, from either
	// engine) are left out below.
	unprotected := map[string]bool{}
	if dd := ev.Config().Rules.DefaultDeny; dd != nil && slices.Contains(dd.Match.Kinds, config.KindPod) {
		for _, ns := range cl.Namespaces() {
			if (namespace != "" && ns.Name != namespace) || ns.DeletionTimestamp != nil || !ev.Protects(ns) {
				continue
			}
			if missing := missingDefaultDeny(cl.NetworkPolicies(ns.Name), dd.PolicyTypes); len(missing) > 0 {
				unprotected[ns.Name] = true
				want := ev.DefaultDenyPolicy(ns.Name)
				findings = append(findings, checkFinding{
					Rule: config.RuleDefaultDeny, Action: string(dd.EnforcementAction), Code: rules.CodeMissingDefaultDeny,
					Object: "Namespace " + ns.Name, Kind: "Namespace", Name: ns.Name,
					Message: fmt.Sprintf("Namespace %s: no default-deny NetworkPolicy for %s, which podwall requires in this namespace (new pods and workloads are refused): apply NetworkPolicy %s/%s",
						ns.Name, strings.Join(missing, " and "), want.Namespace, want.Name),
				})
			}
		}
	}
	for _, o := range checked {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		fs, err := checkObject(cmd, ar, cl, o, false)
		if err != nil {
			return nil, 0, err
		}
		for _, f := range fs {
			if f.Code == rules.CodeMissingDefaultDeny && unprotected[f.Namespace] {
				continue // reported on the namespace
			}
			findings = append(findings, f)
		}
	}
	return findings, len(checked), nil
}

// listAll lists every object of a list type, page by page.
func listAll(ctx context.Context, c client.Reader, l client.ObjectList) ([]runtime.Object, error) {
	var out []runtime.Object
	opts := &client.ListOptions{Limit: 500}
	for {
		if err := c.List(ctx, l, opts); err != nil {
			kind := strings.TrimSuffix(fmt.Sprintf("%T", l), "List")
			kind = kind[strings.LastIndex(kind, ".")+1:]
			if apierrors.IsForbidden(err) {
				return nil, fmt.Errorf("listing %ss: %w (audit needs get and list on namespaces, pods, services, networkpolicies and the workload kinds)", kind, err)
			}
			return nil, fmt.Errorf("listing %ss: %w", kind, err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		cont := l.GetContinue()
		if cont == "" {
			return out, nil
		}
		opts.Continue = cont
	}
}

// controlledByChecked reports whether o's controller is a kind podwall
// checks (so the finding belongs to the controller).
func controlledByChecked(o metav1.Object) bool {
	ref := metav1.GetControllerOf(o)
	if ref == nil {
		return false
	}
	group := ref.APIVersion
	if i := strings.Index(group, "/"); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	switch ref.Kind {
	case config.KindDeployment, config.KindReplicaSet, config.KindStatefulSet, config.KindDaemonSet:
		return group == "apps"
	case config.KindJob, config.KindCronJob:
		return group == "batch"
	}
	return false
}

func kindOf(o runtime.Object) string {
	gvks, _, err := scheme.Scheme.ObjectKinds(o)
	if err != nil || len(gvks) == 0 {
		return ""
	}
	return gvks[0].Kind
}

// missingDefaultDeny returns the policy types no policy denies by default.
func missingDefaultDeny(policies []*networkingv1.NetworkPolicy, types []networkingv1.PolicyType) []string {
	var missing []string
	for _, t := range types {
		dir := policylib.Ingress
		if t == networkingv1.PolicyTypeEgress {
			dir = policylib.Egress
		}
		if !slices.ContainsFunc(policies, func(np *networkingv1.NetworkPolicy) bool {
			return np.DeletionTimestamp == nil && policylib.IsDefaultDeny(np, dir)
		}) {
			missing = append(missing, string(t))
		}
	}
	return missing
}
