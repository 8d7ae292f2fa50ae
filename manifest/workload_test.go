package manifest_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podwall/podwall/manifest"
)

func loadWorkloads(t *testing.T) (*manifest.Set, map[string]runtime.Object) {
	t.Helper()
	s, err := manifest.Load("testdata/workloads")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]runtime.Object{}
	for _, w := range s.Workloads {
		acc, err := meta.Accessor(w.Obj)
		if err != nil {
			t.Fatal(err)
		}
		byName[w.Obj.GetObjectKind().GroupVersionKind().Kind+"/"+acc.GetName()] = w.Obj
	}
	return s, byName
}

func podNames(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		name := p.Namespace + "/" + p.Name
		if p.Spec.NodeName != "" {
			name += "@" + p.Spec.NodeName
		}
		out = append(out, name)
	}
	return out
}

func TestWorkloadPods(t *testing.T) {
	s, workloads := loadWorkloads(t)
	if len(s.Nodes) != 3 {
		t.Fatalf("loaded %d nodes, want 3", len(s.Nodes))
	}
	tests := []struct {
		workload string
		nodes    []*corev1.Node
		want     []string
		labels   map[string]string
	}{
		{"Deployment/web", s.Nodes, []string{"shop/web-0", "shop/web-1"}, map[string]string{"app": "web", "tier": "front"}},
		{"Deployment/single", s.Nodes, []string{"default/single-0"}, map[string]string{"app": "single"}},
		{"Deployment/scaled-down", s.Nodes, nil, nil},
		{"ReplicaSet/rs", s.Nodes, []string{"default/rs-0"}, map[string]string{"app": "rs"}},
		{"StatefulSet/db", s.Nodes, []string{"default/db-0", "default/db-1", "default/db-2"}, map[string]string{"app": "db"}},
		// Tolerates the control-plane taint, so it runs everywhere.
		{"DaemonSet/agent", s.Nodes, []string{"kube-system/agent-node-a@node-a", "kube-system/agent-node-b@node-b", "kube-system/agent-node-c@node-c"}, map[string]string{"app": "agent"}},
		// Kept off the tainted control plane; PreferNoSchedule does not stop it.
		{"DaemonSet/plain", s.Nodes, []string{"default/plain-node-b@node-b", "default/plain-node-c@node-c"}, map[string]string{"app": "plain"}},
		{"DaemonSet/gpu", s.Nodes, []string{"default/gpu-node-b@node-b"}, map[string]string{"app": "gpu"}},
		{"DaemonSet/not-node-a", s.Nodes, []string{"default/not-node-a-node-b@node-b", "default/not-node-a-node-c@node-c"}, map[string]string{"app": "not-node-a"}},
		// Without nodes there is nothing to place it on, but its pod still exists.
		{"DaemonSet/plain", nil, []string{"default/plain-0"}, map[string]string{"app": "plain"}},
		{"Job/batch", s.Nodes, []string{"default/batch-0", "default/batch-1"}, map[string]string{"job": "batch"}},
		{"Job/once", s.Nodes, []string{"default/once-0"}, map[string]string{"job": "once"}},
		{"Job/paused", s.Nodes, nil, nil},
		{"CronJob/nightly", s.Nodes, []string{"default/nightly-0"}, map[string]string{"job": "nightly"}},
	}
	for _, tt := range tests {
		t.Run(tt.workload, func(t *testing.T) {
			w, ok := workloads[tt.workload]
			if !ok {
				t.Fatalf("workload %s not loaded", tt.workload)
			}
			pods, err := manifest.WorkloadPods(w, tt.nodes)
			if err != nil {
				t.Fatal(err)
			}
			if got := podNames(pods); !slices.Equal(got, tt.want) {
				t.Errorf("pods %q, want %q", got, tt.want)
			}
			for _, p := range pods {
				if !maps.Equal(p.Labels, tt.labels) {
					t.Errorf("%s labels %v, want %v", p.Name, p.Labels, tt.labels)
				}
				if got := p.Annotations[manifest.FromWorkloadAnnotation]; got != tt.workload {
					t.Errorf("%s annotation %q, want %q", p.Name, got, tt.workload)
				}
				if p.Kind != "Pod" || p.APIVersion != "v1" {
					t.Errorf("%s TypeMeta %v", p.Name, p.TypeMeta)
				}
				if len(p.Spec.Containers) != 1 {
					t.Errorf("%s spec not copied from the template: %v", p.Name, p.Spec)
				}
				if src, ok := s.SourceOf(p); !ok || src.File != "testdata/workloads/workloads.yaml" {
					t.Errorf("SourceOf(%s) = %v, %v", p.Name, src, ok)
				}
			}
		})
	}
}

func TestWorkloadPodsDetails(t *testing.T) {
	_, workloads := loadWorkloads(t)
	web := workloads["Deployment/web"].(*appsv1.Deployment)
	pods, err := manifest.WorkloadPods(web, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := pods[0].Annotations["team"]; got != "storefront" {
		t.Errorf("template annotations not kept: %v", pods[0].Annotations)
	}
	// Pods must not share maps or slices with the template, or a caller
	// editing one pod would edit the workload and every sibling.
	pods[0].Labels["app"] = "changed"
	pods[0].Spec.Containers[0].Image = "changed"
	if web.Spec.Template.Labels["app"] != "web" || pods[1].Labels["app"] != "web" {
		t.Error("pod labels alias the template")
	}
	if web.Spec.Template.Spec.Containers[0].Image != "nginx" {
		t.Error("pod spec aliases the template")
	}
	if _, ok := web.Spec.Template.Annotations[manifest.FromWorkloadAnnotation]; ok {
		t.Error("the annotation leaked into the template")
	}

	// Unstructured workloads, as a dynamic client returns them, work too.
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(web)
	if err != nil {
		t.Fatal(err)
	}
	upods, err := manifest.WorkloadPods(&unstructured.Unstructured{Object: obj}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(upods); !slices.Equal(got, []string{"shop/web-0", "shop/web-1"}) {
		t.Errorf("unstructured Deployment pods %q", got)
	}
}

func TestWorkloadPodsErrors(t *testing.T) {
	s, err := manifest.Load("testdata/bad/selector-mismatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = manifest.WorkloadPods(s.Workloads[0].Obj, nil)
	want := `Deployment default/mismatch: spec.selector "app=one" does not match the pod template's labels "app=other"`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}

	for _, tt := range []struct {
		replicas int32
		want     string
	}{
		{-1, "Deployment default/mismatch: spec.replicas is negative (-1)"},
		{manifest.MaxPods + 1, "Deployment default/mismatch: spec.replicas is 10001, more than the 10000 pods a workload may expand to"},
	} {
		d := s.Workloads[0].Obj.(*appsv1.Deployment).DeepCopy()
		d.Spec.Template.Labels = d.Spec.Selector.MatchLabels
		d.Spec.Replicas = &tt.replicas
		if _, err := manifest.WorkloadPods(d, nil); err == nil || err.Error() != tt.want {
			t.Errorf("replicas %d: error %v, want %s", tt.replicas, err, tt.want)
		}
	}

	_, err = manifest.WorkloadPods(&corev1.Service{}, nil)
	if err == nil || err.Error() != "Service is not a workload kind" {
		t.Errorf("error %v for a Service", err)
	}
	if _, err := manifest.WorkloadPods(nil, nil); err == nil {
		t.Error("no error for nil")
	}
	if _, err := manifest.WorkloadPods((*appsv1.Deployment)(nil), nil); err == nil {
		t.Error("no error for a nil Deployment")
	}
}

func TestAllPods(t *testing.T) {
	s, err := manifest.Load("testdata/workloads", "testdata/multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods, err := s.AllPods()
	if err != nil {
		t.Fatal(err)
	}
	// 1 loaded pod, then 2+1+0+1+3 replicated, 3+2+1+2 daemon, 2+1+0 job, 1 cron.
	if len(pods) != 20 {
		t.Errorf("%d pods: %q", len(pods), podNames(pods))
	}
	if pods[0] != s.Pods[0] {
		t.Error("loaded pods do not come first")
	}

	tests := []struct {
		path, want string
	}{
		{
			"testdata/bad/pod-clash.yaml",
			`testdata/bad/pod-clash.yaml#2 (StatefulSet default/web): its pod default/web-0 clashes with Pod default/web-0 from testdata/bad/pod-clash.yaml#1`,
		},
		{
			"testdata/bad/selector-mismatch.yaml",
			`testdata/bad/selector-mismatch.yaml#1 (Deployment default/mismatch): spec.selector "app=one" does not match the pod template's labels "app=other"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			s, err := manifest.Load(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			pods, err := s.AllPods()
			if err == nil || pods != nil {
				t.Fatalf("pods %q, error %v", podNames(pods), err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n  %s\nwant\n  %s", err, tt.want)
			}
		})
	}
}

// The scenario every podwall tool is checked against must load as described
// in its README.
func TestSeedScenario(t *testing.T) {
	cluster, err := manifest.Load("../examples/seed/cluster")
	if err != nil {
		t.Fatal(err)
	}
	if len(cluster.Nodes) != 3 || len(cluster.Pods) != 5 || len(cluster.Services) != 1 || cluster.Len() != 9 {
		t.Errorf("cluster: %d nodes, %d pods, %d services, %d objects; want 3, 5, 1, 9",
			len(cluster.Nodes), len(cluster.Pods), len(cluster.Services), cluster.Len())
	}
	for _, p := range cluster.Pods {
		if p.Status.PodIP == "" || p.Spec.NodeName == "" {
			t.Errorf("pod %s lacks its address or node", p.Name)
		}
	}

	demo, err := manifest.Load("../examples/seed/original/httpd-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(demo.Workloads) != 1 || len(demo.Services) != 1 {
		t.Fatalf("httpd-demo: %v", describe(t, demo))
	}
	if svc := demo.Services[0]; svc.Namespace != "default" || svc.Spec.Ports[0].NodePort != 31000 {
		t.Errorf("service %s/%s nodePort %d", svc.Namespace, svc.Name, svc.Spec.Ports[0].NodePort)
	}
	d, ok := demo.Workloads[0].Obj.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("workload is %T", demo.Workloads[0].Obj)
	}
	pods, err := manifest.WorkloadPods(d, cluster.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(pods); !slices.Equal(got, []string{"default/httpd-0", "default/httpd-1", "default/httpd-2"}) {
		t.Errorf("httpd pods %q", got)
	}
	for _, p := range pods {
		if p.Labels["name"] != "networkpolicy-demo" || len(p.Labels) != 1 {
			t.Errorf("pod %s labels %v", p.Name, p.Labels)
		}
	}

	for _, f := range []string{"networkpolicy.yaml", "networkpolicy-ipblock.yaml"} {
		s, err := manifest.Load("../examples/seed/original/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.NetworkPolicies) != 1 || s.NetworkPolicies[0].Namespace != "default" {
			t.Errorf("%s: %v", f, describe(t, s))
		}
	}
	// The two stages are alternative versions of one policy, so loading both
	// at once is a conflict rather than a silent choice of one.
	_, err = manifest.Load("../examples/seed/original")
	want := `../examples/seed/original/networkpolicy.yaml#1 (NetworkPolicy default/access-httpd): duplicate object: already defined in ../examples/seed/original/networkpolicy-ipblock.yaml#1`
	if err == nil || err.Error() != want {
		t.Errorf("loading both stages: %v", err)
	}
}

func TestDaemonSetScheduling(t *testing.T) {
	node := func(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		n := &corev1.Node{Spec: corev1.NodeSpec{Taints: taints}}
		n.Name, n.Labels = name, labels
		return n
	}
	nodes := []*corev1.Node{
		node("small", map[string]string{"zone": "a", "cores": "4"}),
		node("big", map[string]string{"zone": "b", "cores": "64"}, corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}),
		node("draining", map[string]string{"zone": "a"}, corev1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}),
		node("evicting", nil, corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}),
	}
	required := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	}
	tests := []struct {
		name    string
		spec    corev1.PodSpec
		want    []string
		wantErr string
	}{
		{"taints keep it off; node conditions do not", corev1.PodSpec{}, []string{"small", "draining"}, ""},
		{"matching toleration value", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Value: "db"}}}, []string{"small", "big", "draining"}, ""},
		{"other toleration value", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Value: "web"}}}, []string{"small", "draining"}, ""},
		{"toleration for another effect", corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "maintenance", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}}, []string{"small", "draining"}, ""},
		{"tolerate everything", corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}, []string{"small", "big", "draining", "evicting"}, ""},
		{"affinity In", corev1.PodSpec{Affinity: required(expr("zone", corev1.NodeSelectorOpIn, "a"))}, []string{"small", "draining"}, ""},
		{"affinity NotIn", corev1.PodSpec{Affinity: required(expr("zone", corev1.NodeSelectorOpNotIn, "a"))}, nil, ""},
		{"affinity terms are ORed", corev1.PodSpec{
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Affinity:    required(expr("cores", corev1.NodeSelectorOpGt, "8"), expr("zone", corev1.NodeSelectorOpDoesNotExist)),
		}, []string{"big", "evicting"}, ""},
		{"empty term matches nothing", corev1.PodSpec{Affinity: required(corev1.NodeSelectorTerm{})}, nil, ""},
		{"invalid Gt value", corev1.PodSpec{Affinity: required(expr("cores", corev1.NodeSelectorOpGt, "many"))}, nil, "DaemonSet default/ds: node affinity: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{}
			ds.Name = "ds"
			ds.Spec.Template.Spec = tt.spec
			pods, err := manifest.WorkloadPods(ds, nodes)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pods {
				if p.Name != "ds-"+p.Spec.NodeName {
					t.Errorf("pod %s on node %s", p.Name, p.Spec.NodeName)
				}
				got = append(got, p.Spec.NodeName)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("nodes %q, want %q", got, tt.want)
			}
		})
	}
}
