package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
	"github.com/podwall/podwall/webhook/config"
	"github.com/podwall/podwall/webhook/rules"
)

func init() { register(newCheckCmd) }

// checkFinding is one violation of one object, as check reports it.
type checkFinding struct {
	Rule      string `json:"rule"`
	Action    string `json:"action"`
	Code      string `json:"code"`
	Object    string `json:"object"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Source    string `json:"source,omitempty"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
}

// actionMutate marks, with --mutate, the changes the mutating webhook makes.
const actionMutate = "mutate"

func newCheckCmd(e *env) *cobra.Command {
	var (
		files      []string
		configPath string
		output     string
		mutate     bool
		bundlePath string
	)
	cmd := &cobra.Command{
		Use:   "check -f PATH --config FILE",
		Short: "Apply the admission webhook's rules to manifests, offline",
		Long: `check applies podwall's admission rules (the --config file the webhook uses)
to manifests, as kyverno apply or gator test do: every Pod, workload
(Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) and
NetworkPolicy in the -f inputs is evaluated as a CREATE against a cluster made
of the same inputs, so Namespaces, pods, Services and NetworkPolicies there
(default-deny policies included) count.

Each rule runs with the engine the configuration names, as in the webhook:
the Go rules, or the Rego rules built into podwall (or the OPA bundle
--bundle names) over the same cluster.

Objects are checked as written. With --mutate the mutating side runs first, as
in the API server: missing labels get their configured defaults (each
reported with action "mutate") before validation.

Findings are listed as RULE ACTION OBJECT SOURCE MESSAGE (first line of the
message; -o json or yaml gives all of it, with code and field).

Exit status: 1 when a finding's action is deny, 0 otherwise (warn and dryrun
findings only), 2 on bad input or a bad configuration.`,
		Example: `  podwall check -f examples/seed/cluster --config webhook/config/testdata/podwall.yaml
  podwall check -f manifests/ --config podwall.yaml --mutate -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(cmd, output); err != nil {
				return err
			}
			if configPath == "" {
				return &usageError{cmd: cmd.CommandPath(), err: errors.New("--config: required: give the admission configuration file")}
			}
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			ar, err := newAdmissionRules(cmd.Context(), configPath, cfg, bundlePath)
			if err != nil {
				return err
			}
			c, err := e.load(cmd, files)
			if err != nil {
				return err
			}
			// The cluster the objects are created in: what e.load built
			// (workloads expanded into pods), in one go.
			var inCluster []runtime.Object
			for _, o := range c.snap.Namespaces {
				inCluster = append(inCluster, o)
			}
			for _, o := range c.snap.Pods {
				inCluster = append(inCluster, o)
			}
			for _, o := range c.snap.Services {
				inCluster = append(inCluster, o)
			}
			for _, o := range c.snap.Policies {
				// A policy the API server rejects never gets into a
				// cluster; its own check reports it.
				if len(policylib.ValidatePolicy(o)) == 0 {
					inCluster = append(inCluster, o)
				}
			}
			cl := rules.NewMemoryCluster(inCluster...)
			if err := ar.setCluster(cmd.Context(), inCluster); err != nil {
				return err
			}
			objs := checkedObjects(c.set)
			findings := []checkFinding{}
			for _, o := range objs {
				if err := cmd.Context().Err(); err != nil {
					return err
				}
				fs, err := checkObject(cmd, ar, cl, o, mutate)
				if err != nil {
					return err
				}
				findings = append(findings, fs...)
			}
			denied := slices.ContainsFunc(findings, func(f checkFinding) bool { return f.Action == string(config.Deny) })
			if err := writeCheck(e, output, findings, len(objs)); err != nil {
				return err
			}
			if denied {
				return exitStatus(exitFound)
			}
			return nil
		},
	}
	addFilenameFlag(cmd, &files)
	cmd.Flags().StringVar(&configPath, "config", "", "admission configuration file (apiVersion podwall.io/v1alpha1, kind AdmissionConfiguration)")
	cmd.Flags().BoolVar(&mutate, "mutate", false, "apply the mutating rules first (label defaults), as the API server does")
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "OPA bundle (tar.gz or directory) for the rules whose engine is rego (default: the rules built into podwall)")
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// checkedObjects returns the Pods, workloads and NetworkPolicies of the
// set, in the order of their files and documents.
func checkedObjects(set *manifest.Set) []manifest.Object {
	var out []manifest.Object
	for _, o := range set.Objects() {
		if isChecked(o.Obj) {
			out = append(out, o)
		}
	}
	slices.SortStableFunc(out, func(a, b manifest.Object) int {
		return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Doc, b.Source.Doc))
	})
	return out
}

func isChecked(obj runtime.Object) bool {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return false
	}
	switch gvks[0].Kind {
	case config.KindPod, config.KindDeployment, config.KindReplicaSet, config.KindStatefulSet,
		config.KindDaemonSet, config.KindJob, config.KindCronJob, config.KindNetworkPolicy:
		return true
	}
	return false
}

// checkObject evaluates one object as a CREATE.
func checkObject(cmd *cobra.Command, ar *admissionRules, cl rules.Cluster, o manifest.Object, mutate bool) ([]checkFinding, error) {
	gvks, _, err := scheme.Scheme.ObjectKinds(o.Obj)
	if err != nil {
		return nil, err
	}
	gvk := gvks[0]
	meta, ok := o.Obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%s: %s has no metadata", o.Source, gvk.Kind)
	}
	ns := meta.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	raw, err := json.Marshal(o.Obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %s %s/%s: %w", o.Source, gvk.Kind, ns, meta.GetName(), err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       "podwall-check",
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
		Name:      meta.GetName(),
		Namespace: ns,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	finding := func(rule, action, code, field, msg string) checkFinding {
		return checkFinding{
			Rule: rule, Action: action, Code: code, Field: field, Message: msg,
			Object: gvk.Kind + " " + ns + "/" + meta.GetName(), Kind: gvk.Kind, Namespace: ns, Name: meta.GetName(),
			Source: o.Source.String(),
		}
	}
	var out []checkFinding
	if mutate {
		m := ar.mutate(cmd.Context(), req, cl)
		for _, v := range m.Violations {
			out = append(out, finding(v.Rule, string(v.Action), v.Code, v.Field, v.Message))
		}
		// Mutate warns about the defaults it set when it patches, and
		// about defaults it could not set when it does not.
		action := string(config.Warn)
		if len(m.Patches) > 0 {
			action = actionMutate
		}
		for _, w := range m.Warnings {
			rule, msg, _ := strings.Cut(w, ": ")
			out = append(out, finding(rule, action, "", "", msg))
		}
		if len(m.Patches) > 0 {
			ops, err := json.Marshal(m.Patches)
			if err != nil {
				return nil, err
			}
			patch, err := jsonpatch.DecodePatch(ops)
			if err == nil {
				raw, err = patch.Apply(raw)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %s %s/%s: applying the mutation: %w", o.Source, gvk.Kind, ns, meta.GetName(), err)
			}
			req.Object.Raw = raw
		}
	}
	r := ar.validate(cmd.Context(), req, cl)
	validated := len(out)
	for _, v := range r.Violations {
		out = append(out, finding(v.Rule, string(v.Action), v.Code, v.Field, v.Message))
	}
	// One order whichever engine found them (the Go rules give theirs in
	// evaluation order, the Rego rules as a set): by rule, field, code.
	slices.SortStableFunc(out[validated:], func(a, b checkFinding) int {
		return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Field, b.Field), strings.Compare(a.Code, b.Code))
	})
	return out, nil
}

func writeCheck(e *env, output string, findings []checkFinding, objects int) error {
	if output != formatTable {
		summary := map[string]int{"objects": objects}
		for _, f := range findings {
			summary[f.Action]++
		}
		return writeStructured(e.out, output, struct {
			Findings []checkFinding `json:"findings"`
			Summary  map[string]int `json:"summary"`
		}{findings, summary})
	}
	if len(findings) == 0 {
		fmt.Fprintf(e.out, "No findings in %d objects.\n", objects)
		return nil
	}
	// Objects read from a cluster (audit) have no source file: no column.
	sources := slices.ContainsFunc(findings, func(f checkFinding) bool { return f.Source != "" })
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	if sources {
		fmt.Fprintln(tw, "RULE\tACTION\tOBJECT\tSOURCE\tMESSAGE")
	} else {
		fmt.Fprintln(tw, "RULE\tACTION\tOBJECT\tMESSAGE")
	}
	for _, f := range findings {
		first, _, more := strings.Cut(f.Message, "\n")
		first = strings.TrimPrefix(first, f.Object+": ") // the OBJECT column says it
		if more {
			first = strings.TrimSuffix(first, ":") // what followed is in -o json
		}
		if sources {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Rule, f.Action, f.Object, dash(f.Source), oneLine(first))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Rule, f.Action, f.Object, oneLine(first))
		}
	}
	return tw.Flush()
}
