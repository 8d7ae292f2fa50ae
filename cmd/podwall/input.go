package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// stdinName is how objects read from standard input are located in
// messages, as the manifest package names them.
const stdinName = "<stdin>"

// addFilenameFlag adds kubectl's -f/--filename.
func addFilenameFlag(cmd *cobra.Command, files *[]string) {
	cmd.Flags().StringArrayVarP(files, "filename", "f", nil,
		"manifest file, directory (recursive: *.yaml, *.yml, *.json) or - for stdin; repeatable, all are merged")
}

// Output formats.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// addOutputFlag adds kubectl's -o/--output; the first format is the default.
func addOutputFlag(cmd *cobra.Command, format *string, formats ...string) {
	cmd.Flags().StringVarP(format, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations["formats"] = strings.Join(formats, ",")
}

// checkOutput validates -o before any work is done.
func checkOutput(cmd *cobra.Command, format string) error {
	formats := strings.Split(cmd.Annotations["formats"], ",")
	if !slices.Contains(formats, format) {
		return &usageError{cmd: cmd.CommandPath(),
			err: fmt.Errorf("-o/--output %q: unknown format: want %s", format, strings.Join(formats, ", "))}
	}
	return nil
}

// writeStructured writes v as JSON or YAML.
func writeStructured(w io.Writer, format string, v any) error {
	switch format {
	case formatJSON:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case formatYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q", format)
}

// cluster is everything loaded from -f: the manifest set, for sources, and
// the snapshot the engine is built from.
type cluster struct {
	set  *manifest.Set
	snap policylib.Snapshot
}

// load reads and merges every -f input. Pods are the Pods plus the pods of
// every workload.
func (e *env) load(cmd *cobra.Command, files []string) (*cluster, error) {
	if len(files) == 0 {
		return nil, &usageError{cmd: cmd.CommandPath(),
			err: errors.New("-f/--filename: required: give a manifest file, a directory, or - for stdin")}
	}
	var paths []string
	stdin := false
	for _, f := range files {
		if f == manifest.Stdin {
			stdin = true // read once, however often it is named
			continue
		}
		paths = append(paths, f)
	}
	// One Load for all paths, so a file reached twice (a directory and a
	// file in it) counts once.
	set, err := manifest.Load(paths...)
	if err != nil {
		return nil, manifestError(err)
	}
	if stdin {
		part, err := manifest.Read(e.stdin, stdinName)
		if err != nil {
			return nil, manifestError(err)
		}
		if err := set.Merge(part); err != nil {
			return nil, manifestError(err)
		}
	}
	pods, err := set.AllPods()
	if err != nil {
		return nil, manifestError(err)
	}
	return &cluster{set: set, snap: policylib.Snapshot{
		Namespaces: set.Namespaces,
		Nodes:      set.Nodes,
		Pods:       pods,
		Services:   set.Services,
		Policies:   set.NetworkPolicies,
	}}, nil
}

// manifestError rewrites a *manifest.Error into "file#doc: Kind ns/name: problem".
func manifestError(err error) error {
	var me *manifest.Error
	if !errors.As(err, &me) {
		return err
	}
	// The manifest package folds the problem into one line; render it
	// without the location, which is put back in front in our order.
	bare := *me
	bare.Source, bare.Item, bare.Kind, bare.Namespace, bare.Name = manifest.Source{}, "", "", "", ""
	problem := strings.TrimPrefix(bare.Error(), ": ")
	where := me.Source.String()
	if me.Item != "" {
		where += " " + me.Item
	}
	return errors.New(joinNonEmpty(where, objectName(me.Kind, me.Namespace, me.Name), problem))
}

func objectName(kind, namespace, name string) string {
	if name != "" && namespace != "" {
		name = namespace + "/" + name
	}
	return strings.TrimSpace(kind + " " + name)
}

func joinNonEmpty(parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), ": ")
}

// engine builds the policy engine. Any invalid object fails the whole
// command: a verdict computed without one of the policies would be wrong.
func (c *cluster) engine() (*policylib.Engine, error) {
	eng, err := policylib.Build(c.snap)
	if err != nil {
		return nil, c.buildError(err)
	}
	return eng, nil
}

// buildError turns Build's joined error into one line, each problem
// prefixed with the file and document of the object concerned.
func (c *cluster) buildError(err error) error {
	var parts []string
	for _, one := range flattenErrors(err) {
		parts = append(parts, c.locate(one))
	}
	return errors.New(strings.Join(parts, "; "))
}

// checkNonPolicies fails on every invalid object except NetworkPolicies,
// for commands that report invalid policies themselves.
func (c *cluster) checkNonPolicies() error {
	_, err := policylib.Build(c.snap)
	var parts []string
	for _, one := range flattenErrors(err) {
		var pe *policylib.PolicyError
		if !errors.As(one, &pe) {
			parts = append(parts, c.locate(one))
		}
	}
	if len(parts) > 0 {
		return errors.New(strings.Join(parts, "; "))
	}
	return nil
}

func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*policylib.PolicyError); ok {
		return []error{err} // its Unwrap gives field errors, which locate renders
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

func (c *cluster) locate(err error) string {
	var pe *policylib.PolicyError
	if errors.As(err, &pe) {
		fields := make([]string, len(pe.Errs))
		for i, fe := range pe.Errs {
			fields[i] = joinNonEmpty(fe.Field, fe.ErrorBody())
		}
		return joinNonEmpty(c.policySource(pe.Policy), "NetworkPolicy "+pe.Policy.String(), strings.Join(fields, "; "))
	}
	// Node, pod and Service errors start with "Node NAME: ", "Pod NS/NAME: "
	// or "Service NS/NAME: ".
	msg := err.Error()
	for _, n := range c.snap.Nodes {
		if strings.HasPrefix(msg, "Node "+n.Name+": ") {
			return joinNonEmpty(c.source(n), msg)
		}
	}
	for _, p := range c.snap.Pods {
		if strings.HasPrefix(msg, "Pod "+podKey(p)+": ") {
			return joinNonEmpty(c.source(p), msg)
		}
	}
	for _, s := range c.snap.Services {
		if strings.HasPrefix(msg, "Service "+s.Namespace+"/"+s.Name+": ") {
			return joinNonEmpty(c.source(s), msg)
		}
	}
	return msg
}

func (c *cluster) source(obj runtime.Object) string {
	src, ok := c.set.SourceOf(obj)
	if !ok {
		return ""
	}
	return src.String()
}

func (c *cluster) policySource(key types.NamespacedName) string {
	if np := c.policy(key); np != nil {
		return c.source(np)
	}
	return ""
}

func (c *cluster) policy(key types.NamespacedName) *networkingv1.NetworkPolicy {
	for _, np := range c.snap.Policies {
		if np.Namespace == key.Namespace && np.Name == key.Name {
			return np
		}
	}
	return nil
}

// sortedPolicies returns the NetworkPolicies by namespace/name.
func (c *cluster) sortedPolicies() []*networkingv1.NetworkPolicy {
	out := slices.Clone(c.snap.Policies)
	slices.SortFunc(out, func(a, b *networkingv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out
}

func podKey(p *corev1.Pod) string {
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + p.Name
}
