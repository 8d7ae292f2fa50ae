package rules_test

import (
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podwall/podwall/manifest"
	"github.com/podwall/podwall/webhook/rules"
)

func TestMemoryCluster(t *testing.T) {
	a := pod("shop", "a", nil)
	b := pod("shop", "b", nil)
	noNS := pod("", "c", nil)
	np := policy(t, "shop", "p", denyIngressSpec)
	c := rules.NewMemoryCluster(b, a, noNS, np, namespace("shop", nil), service("shop", "s", nil, 80, 80), &corev1.ConfigMap{}, (*corev1.Pod)(nil), nil)
	if got := c.Pods("shop"); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Pods(shop) = %v, want a, b in order", got)
	}
	if got := c.Pods("default"); len(got) != 1 || got[0] != noNS {
		t.Errorf("a pod without namespace is not in default: %v", got)
	}
	if len(c.NetworkPolicies("shop")) != 1 || len(c.Services("shop")) != 1 || len(c.Pods("other")) != 0 {
		t.Error("policies, services or an unknown namespace")
	}
	if ns, ok := c.Namespace("shop"); !ok || ns.Name != "shop" {
		t.Error("Namespace(shop)")
	}
	if _, ok := c.Namespace("default"); ok {
		t.Error("an implied namespace is not a known namespace")
	}
	// Replacing keeps slices already handed out intact.
	before := c.Pods("shop")
	a2 := pod("shop", "a", map[string]string{"v": "2"})
	c.Set(a2)
	if before[0] != a || c.Pods("shop")[0] != a2 || len(c.Pods("shop")) != 2 {
		t.Error("replace")
	}
	c.Delete(b)
	c.Delete(np)
	c.Delete(namespace("shop", nil))
	c.Delete(service("shop", "s", nil, 80, 80))
	if len(c.Pods("shop")) != 1 || len(c.NetworkPolicies("shop")) != 0 || len(c.Services("shop")) != 0 || len(c.Namespaces()) != 0 || len(before) != 2 {
		t.Error("delete")
	}
	// Concurrent use.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Set(pod("shop", string(rune('a'+i)), nil))
				_ = c.Pods("shop")
				_, _ = c.Namespace("shop")
			}
		}()
	}
	wg.Wait()
}

func TestClusterFromManifests(t *testing.T) {
	set, err := manifest.Load(seed+"/cluster", seed+"/original/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := rules.ClusterFromManifests(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pods("default")) != 5 || len(c.Services("default")) != 1 || len(c.NetworkPolicies("default")) != 1 {
		t.Errorf("seed cluster: %d pods, %d services, %d policies", len(c.Pods("default")), len(c.Services("default")), len(c.NetworkPolicies("default")))
	}
	// Workloads become pods.
	set, err = manifest.Load(seed + "/original/httpd-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c, err = rules.ClusterFromManifests(set); err != nil || len(c.Pods("default")) != 3 {
		t.Errorf("httpd-demo: %v, %d pods", err, len(c.Pods("default")))
	}
	if c, err = rules.ClusterFromManifests(nil); err != nil || c == nil {
		t.Errorf("nil set: %v", err)
	}
}
