package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/podwall/podwall/internal/envtest"
)

const auditConfig = "../../webhook/server/testdata/seed.yaml"

// auditObjects is the seed scenario as it would run in a cluster: default
// holds the httpd Deployment (its ReplicaSet and pods controlled by it),
// busybox without access and busybox-access; shop is protected but has no
// default deny, one pod, and a policy open to 0.0.0.0/0.
func auditObjects() []client.Object {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		l := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range labels {
			l[k] = v
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	pod := func(ns, name string, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: spec}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		return p
	}
	httpdLabels := map[string]string{"name": "networkpolicy-demo"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "httpd", UID: "d-1"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: httpdLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: httpdLabels}, Spec: spec},
		},
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "httpd-5d9", UID: "rs-1",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "httpd", UID: "d-1", Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: httpdLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: httpdLabels}, Spec: spec},
		},
	}
	rsRef := &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "httpd-5d9", UID: "rs-1", Controller: ptr.To(true)}
	tcp := corev1.ProtocolTCP
	p80 := intstr.FromInt32(80)
	wide := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "access-anywhere"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: httpdLabels},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}},
			}},
		},
	}
	return []client.Object{
		ns("default", nil), ns("shop", map[string]string{"podwall.io/protected": "true"}), ns("kube-system", nil),
		deploy, rs,
		pod("default", "httpd-5d9-a", httpdLabels, rsRef), pod("default", "httpd-5d9-b", httpdLabels, rsRef),
		pod("default", "busybox", map[string]string{"run": "busybox"}, nil),
		pod("default", "busybox-access", map[string]string{"run": "busybox", "access": "true"}, nil),
		pod("shop", "web", map[string]string{"access": "true"}, nil),
		pod("kube-system", "coredns", nil, nil),
		wide,
	}
}

// wantAuditFindings are the findings auditObjects must give.
var wantAuditFindings = []string{
	"deny defaultDeny Namespace shop",
	"deny requiredLabels Deployment default/httpd",
	"deny requiredLabels Pod default/busybox",
	"deny networkPolicyHygiene NetworkPolicy shop/access-anywhere", // ingress-from-anywhere
	"warn networkPolicyHygiene NetworkPolicy shop/access-anywhere", // selects-no-pods: no httpd pod in shop
}

// TestAuditCluster audits auditObjects with every rule on the Go engine,
// then on rego: the same findings, a namespace without its default deny
// reported once either way.
func TestAuditCluster(t *testing.T) {
	for _, cfg := range []string{auditConfig, "../../webhook/server/testdata/seed-rego.yaml"} {
		t.Run(filepath.Base(cfg), func(t *testing.T) { testAuditCluster(t, cfg) })
	}
}

func testAuditCluster(t *testing.T, configPath string) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(auditObjects()...).Build()
	cmd := &cobra.Command{}
	cmd.SetContext(context.Background())
	ev, err := auditRules(context.Background(), c, configPath, "", "")
	if err != nil {
		t.Fatal(err)
	}
	findings, objects, err := auditCluster(cmd, c, ev, "")
	if err != nil {
		t.Fatal(err)
	}
	got := summarize(findings)
	if !slices.Equal(got, wantAuditFindings) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantAuditFindings, "\n"))
	}
	// The deployment, busybox, busybox-access, shop/web, the policy, and
	// kube-system's pod (exempt, no finding); not the ReplicaSet or its pods.
	if objects != 6 {
		t.Errorf("objects = %d, want 6", objects)
	}
	// One namespace only.
	findings, _, err = auditCluster(cmd, c, ev, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(findings); !slices.Equal(got, []string{wantAuditFindings[0], wantAuditFindings[3], wantAuditFindings[4]}) {
		t.Errorf("-n shop: %q", got)
	}
	// A namespace the cluster does not have is a mistake, not a clean bill.
	if _, _, err := auditCluster(cmd, c, ev, "nosuch"); err == nil || !strings.Contains(err.Error(), "-n/--namespace nosuch: no such namespace") {
		t.Errorf("-n nosuch: %v", err)
	}
}

func TestAuditConfigFromConfigMap(t *testing.T) {
	data, err := os.ReadFile(auditConfig)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "podwall-system", Name: "podwall-config"}, Data: map[string]string{"podwall.yaml": string(data)}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(cm).Build()
	ev, err := auditRules(context.Background(), c, "", "podwall-system", "")
	if err != nil || len(ev.goSide.Rules()) != 3 {
		t.Fatalf("evaluator from the ConfigMap: %v", err)
	}
	_, err = auditRules(context.Background(), c, "", "elsewhere", "")
	if err == nil || !strings.Contains(err.Error(), "no --config given and no ConfigMap elsewhere/podwall-config") {
		t.Errorf("err = %v", err)
	}
	cm.Data["podwall.yaml"] = "apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules: {requiredLabels: {labels: []}}\n"
	c = fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(cm).Build()
	_, err = auditRules(context.Background(), c, "", "podwall-system", "")
	if err == nil || !strings.HasPrefix(err.Error(), "ConfigMap podwall-system/podwall-config: rules.requiredLabels.labels") {
		t.Errorf("err = %v", err)
	}
}

func TestWebhookFlags(t *testing.T) {
	code, _, errOut := podwall(t, "", "webhook", "--port", "70000", "--namespace", "Bad_NS", "--metrics-bind-address", "nope")
	if code != exitBadInput {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Port 70000: must be between 1 and 65535", `Namespace "Bad_NS"`, `MetricsAddr "nope"`, "see 'podwall webhook --help'"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr is not one line: %q", errOut)
	}
	// Missing certificates and configuration are reported before anything
	// is contacted.
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = podwall(t, "", "webhook", "--kubeconfig", kc, "--cert-dir", dir, "--config", filepath.Join(dir, "podwall.yaml"))
	if code != exitBadInput || !strings.Contains(errOut, filepath.Join(dir, "tls.crt")+": no such file or directory") || !strings.Contains(errOut, "tls.key") {
		t.Errorf("missing certificates: exit %d, %s", code, errOut)
	}
	writeTestCert(t, dir)
	code, _, errOut = podwall(t, "", "webhook", "--kubeconfig", kc, "--cert-dir", dir, "--config", filepath.Join(dir, "podwall.yaml"))
	if code != exitBadInput || !strings.Contains(errOut, "podwall.yaml: no such file or directory") {
		t.Errorf("missing configuration: exit %d, %s", code, errOut)
	}
	code, _, errOut = podwall(t, "", "audit", "--kubeconfig", filepath.Join(dir, "nope"))
	if code != exitBadInput || !strings.Contains(errOut, "nope: no such file or directory") {
		t.Errorf("audit with a missing kubeconfig: exit %d, %s", code, errOut)
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 into dir.
func writeTestCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podwall-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func auditJSON(t *testing.T, wantCode int, args ...string) checkDoc {
	t.Helper()
	code, out, errOut := podwall(t, "", append(append([]string{"audit"}, args...), "-o", "json")...)
	if code != wantCode || errOut != "" {
		t.Fatalf("audit %s: exit %d, stderr %q; want exit %d", strings.Join(args, " "), code, errOut, wantCode)
	}
	var doc checkDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return doc
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestLiveCluster runs `podwall audit` and `podwall webhook` against a real
// API server (envtest), through a kubeconfig file.
func TestLiveCluster(t *testing.T) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		if _, aerr := envtest.Assets(); aerr != nil {
			t.Skip("envtest: " + aerr.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	for _, o := range auditObjects() {
		o.SetUID("")
		for i := range o.GetOwnerReferences() {
			o.GetOwnerReferences()[i].UID = "00000000-0000-0000-0000-000000000001"
		}
		if err := env.Client.Create(ctx, o); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("%T %s: %v", o, o.GetName(), err)
		}
	}
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}

	t.Run("audit", func(t *testing.T) {
		doc := auditJSON(t, 1, "--kubeconfig", kc, "--config", auditConfig)
		// The API server sets real UIDs, so ownership is by reference; the
		// objects are otherwise auditObjects.
		if got := summarize(doc.Findings); !slices.Equal(got, wantAuditFindings) {
			t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantAuditFindings, "\n"))
		}
		code, out, errOut := podwall(t, "", "audit", "--kubeconfig", kc, "--config", auditConfig, "-n", "default")
		if code != 1 || errOut != "" || !strings.HasPrefix(out, "RULE") || !strings.Contains(out, "requiredLabels  deny    Pod default/busybox") {
			t.Errorf("table: exit %d, stderr %q:\n%s", code, errOut, out)
		}
		// Without --config: the webhook's ConfigMap.
		data, _ := os.ReadFile(auditConfig)
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "podwall-system"}}); err != nil {
			t.Fatal(err)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "podwall-system", Name: "podwall-config"}, Data: map[string]string{"podwall.yaml": string(data)}}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		doc = auditJSON(t, 1, "--kubeconfig", kc)
		if len(doc.Findings) != len(wantAuditFindings) {
			t.Errorf("from the ConfigMap: %q", summarize(doc.Findings))
		}
	})

	t.Run("webhook", func(t *testing.T) {
		writeTestCert(t, dir)
		port, health := freePort(t), freePort(t)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		var stderr strings.Builder
		go func() {
			var out strings.Builder
			done <- runCLI(wctx, []string{"webhook", "--kubeconfig", kc, "--cert-dir", dir, "--config", auditConfig,
				"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--metrics-bind-address", "0",
				"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", health)}, strings.NewReader(""), &out, &stderr)
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("not ready: %v; exit %d", err, <-done)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel() // SIGTERM
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d after shutdown", code)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("did not shut down")
		}
		logs := stderr.String()
		for _, want := range []string{`"msg":"starting podwall webhook"`, `"rules":["requiredLabels","defaultDeny","networkPolicyHygiene"]`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s:\n%s", want, logs)
			}
		}
	})
}
