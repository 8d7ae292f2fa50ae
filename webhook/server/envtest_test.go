package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podwall/podwall/webhook/server"
)

// createNamespace creates a namespace (removed at the end of the test).
func createNamespace(t *testing.T, c client.Client, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), ns) })
}

// ensureNamespace creates a namespace shared by tests, if missing. It is
// never deleted: envtest has no namespace controller, so a deleted
// namespace stays terminating.
func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// eventually polls f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCached waits until the server's cache, and the Rego rules' copy of
// it when some rule uses rego, has seen the namespace's policies as listed
// by the API server, so decisions that depend on them are not raced.
func waitCached(t *testing.T, l *live, ns string, names ...string) {
	t.Helper()
	slices.Sort(names)
	eventually(t, 10*time.Second, "cache catching up on "+ns, func() error {
		var got []string
		for _, np := range l.srv.Cluster().NetworkPolicies(ns) {
			got = append(got, np.Name)
		}
		if !slices.Equal(got, names) {
			return errors.New("cache has " + strings.Join(got, ",") + ", want " + strings.Join(names, ","))
		}
		if len(l.srv.Rego().Rules()) == 0 {
			return nil
		}
		// Read in a transaction: the store changes its objects in place.
		store := l.srv.Rego().Store()
		got = got[:0]
		err := storage.Txn(context.Background(), store, storage.TransactionParams{}, func(txn storage.Transaction) error {
			v, err := store.Read(context.Background(), txn, storage.Path{"kubernetes", "networkpolicies", ns})
			if err != nil {
				return err
			}
			for _, k := range v.(ast.Object).Keys() {
				got = append(got, string(k.Value.(ast.String)))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("data.kubernetes: %w", err)
		}
		slices.Sort(got)
		if !slices.Equal(got, names) {
			return errors.New("data.kubernetes has " + strings.Join(got, ",") + ", want " + strings.Join(names, ","))
		}
		return nil
	})
}

// denied checks that err is the webhook's refusal naming the rule.
func denied(t *testing.T, err error, webhook, rule string, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted; want a refusal by %s", rule)
	}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("err = %v (%T), want Forbidden", err, err)
	}
	msg := err.Error()
	want := `admission webhook "` + webhook + `" denied the request: `
	if !strings.Contains(msg, want) || !strings.Contains(msg, "rule "+rule+": ") {
		t.Errorf("message %q lacks %q and rule %s", msg, want, rule)
	}
	for _, c := range contains {
		if !strings.Contains(msg, c) {
			t.Errorf("message lacks %q:\n%s", c, msg)
		}
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		// Each cause is "rule/code", whichever engine found it; other rules
		// may refuse the same request too.
		d := se.Status().Details
		if d == nil || !slices.ContainsFunc(d.Causes, func(c metav1.StatusCause) bool { return strings.HasPrefix(string(c.Type), rule+"/") }) {
			t.Errorf("status details = %+v, want a cause of rule %s", d, rule)
		}
	}
}

// TestSeedScenarioThroughAPIServer runs the seed scenario through a real
// kube-apiserver calling podwall over TLS with deploy/'s webhook
// configurations.
func TestSeedScenarioThroughAPIServer(t *testing.T) {
	l := podwallServer(t)
	seedScenario(t, l, "seed", "shop", false)
}

// TestSeedScenarioRegoThroughAPIServer switches the live server's
// configuration (without a restart) to the seed's rules on the rego engine,
// protectedAccess added, then to a mix of engines, and runs the seed
// scenario again, each time in fresh namespaces: the outcomes are the Go
// rules'. The Rego rules read the cluster from the data.kubernetes the
// server keeps from its informers.
func TestSeedScenarioRegoThroughAPIServer(t *testing.T) {
	l := podwallServer(t)
	defer useConfig(t, l, "testdata/seed.yaml")
	for _, eng := range []struct {
		name, config  string
		rego          []string
		protectAccess bool
	}{
		{"rego", "testdata/seed-rego.yaml", []string{"requiredLabels", "defaultDeny", "networkPolicyHygiene", "protectedAccess"}, true},
		{"mixed", "testdata/seed-mixed.yaml", []string{"requiredLabels", "networkPolicyHygiene"}, false},
	} {
		t.Run(eng.name, func(t *testing.T) {
			useConfig(t, l, eng.config)
			if got := l.srv.Rego().Rules(); !slices.Equal(got, eng.rego) {
				t.Fatalf("rego rules = %v, want %v", got, eng.rego)
			}
			seedScenario(t, l, "seed-"+eng.name, "shop-"+eng.name, eng.protectAccess)
		})
	}
}

// TestBundleReloadThroughAPIServer changes the live server's bundle file
// (--bundle) under the rules on rego: a bundle that does not compile is
// refused, the one in force staying; a good one takes effect without a
// restart.
func TestBundleReloadThroughAPIServer(t *testing.T) {
	l := podwallServer(t)
	defer useConfig(t, l, "testdata/seed.yaml")
	bw, r := l.srv.Bundles(), l.srv.Rego()
	revision := func(want string) func() error {
		return func() error {
			if got := r.Revision(); got != want {
				return fmt.Errorf("revision %q, want %q", got, want)
			}
			return nil
		}
	}
	defer func() {
		writeBundle(t, l.bundleFile, "live-1", nil)
		eventually(t, 15*time.Second, "restoring the bundle", revision("live-1"))
	}()
	useConfig(t, l, "testdata/seed-rego.yaml")
	c := l.env.Client
	ctx := context.Background()
	createNamespace(t, c, "bundles", nil)
	maybe := func() error {
		return c.Create(ctx, pod("bundles", "maybe", map[string]string{"access": "maybe"}), client.DryRunAll)
	}
	denied(t, maybe(), "workloads.validate.podwall.io", "requiredLabels")

	gen := bw.Generation()
	writeBundle(t, l.bundleFile, "live-broken", brokenModule)
	eventually(t, 15*time.Second, "the broken bundle noticed", func() error {
		if bw.LastError() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	if err := bw.LastError(); !strings.Contains(err.Error(), "undefined function undefined_function") || bw.Generation() != gen || r.Revision() != "live-1" {
		t.Errorf("after the broken bundle: %v, generation %d (was %d), revision %q", err, bw.Generation(), gen, r.Revision())
	}
	denied(t, maybe(), "workloads.validate.podwall.io", "requiredLabels")

	writeBundle(t, l.bundleFile, "live-2", noRequiredLabels)
	eventually(t, 15*time.Second, "the new bundle", revision("live-2"))
	if err := maybe(); err != nil {
		t.Errorf("live-2 checks no labels, yet: %v", err)
	}
	code, body := httpGet(t, "http://"+l.metricsAdr+"/metrics")
	for _, want := range []string{`podwall_bundle_info{revision="live-2"} 1`, `podwall_bundle_reloads_total{result="failure"}`, `podwall_bundle_reloads_total{result="success"}`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestServerStartsOnRego starts a second server (not registered with the
// API server) whose configuration has every rule on rego from the start,
// with the embedded bundle: it is ready only once data.kubernetes holds
// the cluster, and then decides over HTTPS as the Go rules would.
func TestServerStartsOnRego(t *testing.T) {
	l := podwallServer(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "podwall.yaml")
	if err := copyFile("testdata/seed-rego.yaml", cfgFile); err != nil {
		t.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	srv, err := server.New(l.env.Config, server.Options{
		Host: "127.0.0.1", Port: port, CertDir: l.env.ServingCertDir,
		ConfigFile: cfgFile, MetricsAddr: "0", HealthAddr: "0", ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := srv.Rego(); r.Synced() || r.Evaluator() == nil {
		t.Fatalf("before the start: synced %v, evaluator %v", r.Synced(), r.Evaluator())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	defer func() {
		cancel()
		if err := drain(done); err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err := srv.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.ReadOne(ctx, srv.Rego().Store(), storage.Path{"kubernetes", "namespaces", "kube-system"}); err != nil {
		t.Fatalf("data.kubernetes after ready: %v", err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.env.ServingCA)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		obj     runtime.Object
		allowed bool
	}{
		{pod("default", "bad", map[string]string{"access": "maybe"}), false},
		{pod("default", "good", map[string]string{"access": "true"}), true},
		{accessPolicy("default", "wide", "0.0.0.0/0"), false},
	} {
		body := reviewBody(t, request(t, admissionv1.Create, tc.obj, nil))
		resp, err := hc.Post("https://"+addr+"/validate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if r := decodeReview(t, out); r.Response.Allowed != tc.allowed {
			t.Errorf("%T: allowed %v, want %v: %s", tc.obj, r.Response.Allowed, tc.allowed, out)
		}
	}
}

// useConfig makes the live server load the configuration file from and
// waits for it to take effect.
func useConfig(t *testing.T, l *live, from string) {
	t.Helper()
	cw := l.srv.Config()
	gen := cw.Generation()
	if err := copyFile(from, l.configFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "loading "+from, func() error {
		if err := cw.LastError(); err != nil {
			return err
		}
		if cw.Generation() == gen {
			return errors.New("not reloaded")
		}
		return nil
	})
}

// seedScenario walks the seed scenario in namespaces seedNS and shopNS
// (shopNS protected). The expected messages are those both engines word
// alike. With protectedAccess the configuration protects the seed's httpd
// pod (name=networkpolicy-demo) too.
func seedScenario(t *testing.T, l *live, seedNS, shopNS string, protectedAccess bool) {
	c, warns := clientWithWarnings(t, l.env)
	ctx := context.Background()
	createNamespace(t, c, seedNS, nil)
	createNamespace(t, c, shopNS, map[string]string{"podwall.io/protected": "true"})
	const workloads, netpols = "workloads.validate.podwall.io", "networkpolicies.validate.podwall.io"

	t.Run("busybox without access is mutated", func(t *testing.T) {
		warns.take()
		p := pod(seedNS, "busybox", map[string]string{"run": "busybox"})
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		got := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			t.Fatal(err)
		}
		if got.Labels["access"] != "false" || got.Labels["run"] != "busybox" {
			t.Errorf("labels = %v, want access=false added", got.Labels)
		}
		if w := warns.take(); len(w) != 1 || !strings.Contains(w[0], `requiredLabels: set missing label access="false" (the configured default) on Pod `+seedNS+`/busybox`) {
			t.Errorf("warnings = %q", w)
		}
	})
	t.Run("access with a value not allowed is denied", func(t *testing.T) {
		err := c.Create(ctx, pod(seedNS, "busybox-maybe", map[string]string{"access": "maybe"}))
		denied(t, err, workloads, "requiredLabels", `label access="maybe" is not allowed: want one of `)
	})
	t.Run("a deployment's template is mutated", func(t *testing.T) {
		p := pod(seedNS, "", map[string]string{"app": "web"})
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: seedNS, Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: p.Labels}, Spec: p.Spec},
			},
		}
		if err := c.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		got := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.Template.Labels["access"] != "false" {
			t.Errorf("template labels = %v", got.Spec.Template.Labels)
		}
	})
	t.Run("pod in a protected namespace without default deny is denied", func(t *testing.T) {
		err := c.Create(ctx, pod(shopNS, "web", map[string]string{"access": "true"}))
		denied(t, err, workloads, "defaultDeny", "namespace "+shopNS+" has no default-deny NetworkPolicy for Ingress",
			"apply NetworkPolicy "+shopNS+"/default-deny first", "podSelector")
	})
	t.Run("the default deny is admitted", func(t *testing.T) {
		if err := c.Create(ctx, defaultDeny(shopNS)); err != nil {
			t.Fatal(err)
		}
		waitCached(t, l, shopNS, "default-deny")
		if err := c.Create(ctx, pod(shopNS, "web", map[string]string{"access": "true", "name": "networkpolicy-demo"})); err != nil {
			t.Fatalf("pod after the default deny: %v", err)
		}
	})
	t.Run("the access policy is admitted", func(t *testing.T) {
		warns.take()
		if err := c.Create(ctx, accessPolicy(shopNS, "access-httpd", "")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the ipBlock policy is admitted as an update", func(t *testing.T) {
		np := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: shopNS, Name: "access-httpd"}, np); err != nil {
			t.Fatal(err)
		}
		np.Spec = accessPolicy(shopNS, "access-httpd", "192.168.2.0/24").Spec
		if err := c.Update(ctx, np); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ingress from 0.0.0.0/0 is refused", func(t *testing.T) {
		err := c.Create(ctx, accessPolicy(shopNS, "access-anywhere", "0.0.0.0/0"))
		denied(t, err, netpols, "networkPolicyHygiene", "0.0.0.0/0")
		// Also in an unprotected namespace, and in a dry run.
		err = c.Create(ctx, accessPolicy(seedNS, "access-anywhere", "0.0.0.0/0"), client.DryRunAll)
		denied(t, err, netpols, "networkPolicyHygiene")
	})
	t.Run("allow-all ingress is refused in the protected namespace only", func(t *testing.T) {
		open := accessPolicy(shopNS, "open", "")
		open.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		denied(t, c.Create(ctx, open, client.DryRunAll), netpols, "networkPolicyHygiene", "ingress rule 0 allows every")
		open.Namespace = seedNS
		if err := c.Create(ctx, open, client.DryRunAll); err != nil {
			t.Errorf("allow-all ingress in %s: %v", seedNS, err)
		}
	})
	if protectedAccess {
		t.Run("opening the protected pod to every pod is refused", func(t *testing.T) {
			np := accessPolicy(shopNS, "everyone", "")
			np.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
			denied(t, c.Create(ctx, np, client.DryRunAll), netpols, "protectedAccess")
		})
	}
	t.Run("deleting the last default deny is refused", func(t *testing.T) {
		err := c.Delete(ctx, defaultDeny(shopNS))
		denied(t, err, netpols, "defaultDeny", "NetworkPolicy "+shopNS+"/default-deny is the last default deny for Ingress in namespace "+shopNS)
		// Weakening it is refused too.
		np := &networkingv1.NetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: shopNS, Name: "default-deny"}, np); err != nil {
			t.Fatal(err)
		}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		denied(t, c.Update(ctx, np), netpols, "defaultDeny", "this update stops it denying Ingress by default")
	})
	t.Run("with a second default deny the first may go", func(t *testing.T) {
		dd := defaultDeny(shopNS)
		dd.Name = "deny-all"
		if err := c.Create(ctx, dd); err != nil {
			t.Fatal(err)
		}
		waitCached(t, l, shopNS, "access-httpd", "default-deny", "deny-all")
		if err := c.Delete(ctx, defaultDeny(shopNS)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("exempt namespaces are not sent", func(t *testing.T) {
		ensureNamespace(t, c, "podwall-system")
		if err := c.Create(ctx, pod("podwall-system", "anything-"+seedNS, nil)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDefaultDenyGeneratorAndReload switches the live server's
// configuration file to one with the generator on (picked up without a
// restart), and checks that the generator creates the default deny in a
// newly labelled namespace, recreates it after a deletion, and does not
// loop; then that an invalid configuration is refused, the last good one
// staying in force.
func TestDefaultDenyGeneratorAndReload(t *testing.T) {
	l := podwallServer(t)
	c, warns := clientWithWarnings(t, l.env)
	ctx := context.Background()
	cw := l.srv.Config()
	defer func() {
		gen := cw.Generation()
		_ = copyFile("testdata/seed.yaml", l.configFile)
		eventually(t, 15*time.Second, "restoring seed.yaml", func() error {
			if cw.Generation() == gen {
				return errors.New("not reloaded")
			}
			return nil
		})
	}()
	gen := cw.Generation()
	if err := copyFile("testdata/generate.yaml", l.configFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "reloading generate.yaml", func() error {
		if cw.Generation() == gen {
			return errors.New("not reloaded")
		}
		return nil
	})
	if dd := cw.Evaluator().Config().Rules.DefaultDeny; dd == nil || !dd.Generate {
		t.Fatalf("generate.yaml not in force")
	}

	createNamespace(t, c, "gen", nil)
	key := client.ObjectKey{Namespace: "gen", Name: "default-deny"}
	time.Sleep(300 * time.Millisecond)
	if err := c.Get(ctx, key, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Fatalf("policy in an unmatched namespace: %v", err)
	}
	// Labelling the namespace makes it match.
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "gen"}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels["podwall.io/generate"] = "true"
	if err := c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	np := &networkingv1.NetworkPolicy{}
	eventually(t, 10*time.Second, "generated policy", func() error { return c.Get(ctx, key, np) })
	if np.Labels[server.ManagedByLabel] != server.ManagedByValue || len(np.Spec.Ingress) != 0 || len(np.Spec.PodSelector.MatchLabels) != 0 ||
		!slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress"}) {
		t.Errorf("generated policy = %+v", np)
	}
	first := np.UID

	// Deleted (allowed, with a warning, as the rule only warns here): it
	// comes back.
	warns.take()
	if err := c.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
	if w := warns.take(); len(w) == 0 || !strings.Contains(strings.Join(w, "\n"), "defaultDeny: NetworkPolicy gen/default-deny is the last default deny") {
		t.Errorf("delete warnings = %q", w)
	}
	eventually(t, 10*time.Second, "recreated policy", func() error {
		if err := c.Get(ctx, key, np); err != nil {
			return err
		}
		if np.UID == first {
			return errors.New("still the deleted one")
		}
		return nil
	})
	second := np.UID
	// No loop: a while later it is the same object, alone.
	time.Sleep(time.Second)
	list := &networkingv1.NetworkPolicyList{}
	if err := c.List(ctx, list, client.InNamespace("gen")); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].UID != second {
		t.Errorf("policies after a second: %d, want the recreated one alone", len(list.Items))
	}
	// A user's default deny under another name is enough: nothing else is
	// created when a second namespace has one first.
	createNamespace(t, c, "gen2", nil)
	user := defaultDeny("gen2")
	user.Name = "users-own-deny"
	if err := c.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	waitCached(t, l, "gen2", "users-own-deny")
	ns2 := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "gen2"}, ns2); err != nil {
		t.Fatal(err)
	}
	ns2.Labels["podwall.io/generate"] = "true"
	if err := c.Update(ctx, ns2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := c.List(ctx, list, client.InNamespace("gen2")); err != nil || len(list.Items) != 1 {
		t.Errorf("gen2 policies: %d (%v), want the user's alone", len(list.Items), err)
	}

	// An invalid configuration is refused; the generator's stays.
	gen = cw.Generation()
	if err := os.WriteFile(l.configFile, []byte("apiVersion: podwall.io/v1alpha1\nkind: AdmissionConfiguration\nrules: {defaultDeny: {enforcementAction: block}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "invalid configuration noticed", func() error {
		if cw.LastError() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	if cw.Generation() != gen || !strings.Contains(cw.LastError().Error(), `Unsupported value: "block"`) {
		t.Errorf("generation %d (was %d), last error %v", cw.Generation(), gen, cw.LastError())
	}
	if dd := cw.Evaluator().Config().Rules.DefaultDeny; dd == nil || !dd.Generate {
		t.Errorf("the configuration in force changed")
	}
}

// TestHealthAndMetrics reads /healthz, /readyz and /metrics of the live
// server.
func TestHealthAndMetrics(t *testing.T) {
	l := podwallServer(t)
	// One decision at least, so the counters exist.
	c := l.env.Client
	createNamespace(t, c, "metrics", nil)
	_ = c.Create(context.Background(), pod("metrics", "p", map[string]string{"access": "nope"}))
	get := func(url string) (int, string) { return httpGet(t, url) }
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get("http://" + l.healthAddr + p); code != 200 {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	code, body := get("http://" + l.metricsAdr + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`podwall_admission_decisions_total{action="deny",result="denied",rule="requiredLabels"}`,
		`podwall_admission_decisions_total{action="mutate",result="allowed",rule="none"}`,
		`controller_runtime_webhook_requests_total{code="200",webhook="/validate"}`,
		`controller_runtime_webhook_latency_seconds_bucket{webhook="/mutate"`,
		`podwall_config_generation`,
		`podwall_bundle_info{revision="`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
