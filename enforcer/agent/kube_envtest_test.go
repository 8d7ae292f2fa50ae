package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podwall/podwall/enforcer/agent"
	"github.com/podwall/podwall/internal/envtest"
	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/policylib"
)

// These tests use a real kube-apiserver (internal/envtest; they skip when
// KUBEBUILDER_ASSETS has none).
var shared = envtest.NewShared(func() (envtest.Options, error) { return envtest.Options{}, nil })

func TestMain(m *testing.M) { os.Exit(shared.Main(m)) }

func renderDeploy(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := envtest.Render(filepath.Join(envtest.RepoRoot(), "deploy", "enforcer"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestDeployManifests checks what deploy/enforcer promises, offline.
func TestDeployManifests(t *testing.T) {
	var ds appsv1.DaemonSet
	found := false
	for _, o := range renderDeploy(t) {
		if o.GetKind() == "DaemonSet" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet || spec.ServiceAccountName != "podwall-enforcer" {
		t.Errorf("pod spec: hostNetwork %v, dnsPolicy %s, serviceAccount %s", spec.HostNetwork, spec.DNSPolicy, spec.ServiceAccountName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v, want one that tolerates every taint", spec.Tolerations)
	}
	c := spec.Containers[0]
	if c.Image != "podwall:latest" || c.Args[0] != "enforce" {
		t.Errorf("image %s, args %v", c.Image, c.Args)
	}
	sc := c.SecurityContext
	if sc == nil || *sc.Privileged || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) {
		t.Errorf("security context %+v", sc)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env %+v, want NODE_NAME from spec.nodeName", c.Env)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("probes or resources missing: %+v", c)
	}
}

// TestDeployOnAPIServer applies deploy/enforcer to a real API server (the
// DaemonSet in a server-side dry run, since nothing would run it; the
// namespace and RBAC for real), then runs the agent with the DaemonSet's
// identity (the ServiceAccount, impersonated): the ClusterRole is enough,
// and the agent follows pods and policies as they change.
func TestDeployOnAPIServer(t *testing.T) {
	env := shared.Get(t)
	ctx := context.Background()
	for _, o := range renderDeploy(t) {
		opts := []client.ApplyOption{client.FieldOwner("podwall-test"), client.ForceOwnership}
		if o.GetKind() == "DaemonSet" {
			opts = append(opts, client.DryRunAll)
		}
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	admin := kubernetes.NewForConfigOrDie(env.Config)
	// The seed cluster, pods with their addresses in status.
	set, err := manifest.Load(seed + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range set.Nodes {
		created, err := admin.CoreV1().Nodes().Create(ctx, n.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = n.Status
		if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range set.Pods {
		created, err := admin.CoreV1().Pods(p.Namespace).Create(ctx, p.DeepCopy(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.Status.PodIP, PodIPs: []corev1.PodIP{{IP: p.Status.PodIP}}}
		if _, err := admin.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:podwall-enforcer:podwall-enforcer"}
	s := start(t, agent.Options{}, &agent.KubeSource{Client: kubernetes.NewForConfigOrDie(cfg)})
	if got := s.metric(t, "podwall_enforcer_source_errors_total"); got != 0 {
		t.Errorf("source errors with the ServiceAccount's permissions: %v", got)
	}
	eventually(t, 10*time.Second, "the seed's local pods and node address", func() bool {
		rs := s.app.last()
		return rs != nil && len(rs.Pods) == 3 && len(rs.NodeAddrs) == 1
	})

	ps, err := manifest.Load(seed + "/original/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	np := ps.NetworkPolicies[0].DeepCopy()
	if _, err := admin.NetworkingV1().NetworkPolicies("default").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "stage 1 applied", func() bool {
		rs := s.app.last()
		return !allowed(rs, busybox, httpd1, policylib.TCP, 80) && allowed(rs, busyboxAccess, httpd1, policylib.TCP, 80)
	})
	if err := admin.NetworkingV1().NetworkPolicies("default").Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "policy deleted", func() bool {
		return allowed(s.app.last(), busybox, httpd1, policylib.TCP, 80)
	})
	if got := s.metric(t, "podwall_enforcer_source_errors_total"); got != 0 {
		t.Errorf("source errors: %v", got)
	}
}
