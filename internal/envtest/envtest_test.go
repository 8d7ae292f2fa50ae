package envtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderDeploy(t *testing.T) {
	root := RepoRoot()
	objs, err := Render(filepath.Join(root, "deploy", "webhook"), filepath.Join(root, "deploy", "components", "defaultdeny-generator"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
		if o.GetKind() == "Deployment" {
			cs := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
			if img := cs[0].(map[string]any)["image"]; img != "podwall:latest" {
				t.Errorf("image = %v", img)
			}
		}
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"Namespace/podwall-system", "Deployment/podwall-webhook", "ClusterRole/podwall-defaultdeny-generator", "MutatingWebhookConfiguration/podwall"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered %s, missing %s", got, want)
		}
	}
}

func TestRenderRefusesUnsupported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: elsewhere\nresources: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(dir); err == nil || !strings.Contains(err.Error(), `unknown field "namespace"`) {
		t.Errorf("err = %v", err)
	}
}

func TestDeployWebhooks(t *testing.T) {
	v, m, err := DeployWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v[0].Webhooks {
		if p := *w.ClientConfig.Service.Path; strings.HasPrefix(p, "/") {
			t.Errorf("%s: path %q keeps its slash", w.Name, p)
		}
	}
	if v[0].Name != "podwall-envtest" || m[0].Name != "podwall-envtest" {
		t.Errorf("names %s, %s", v[0].Name, m[0].Name)
	}
}

func TestAssets(t *testing.T) {
	t.Setenv(AssetsEnv, "")
	if _, err := Assets(); err == nil || !strings.Contains(err.Error(), "hack/install-test-deps.sh") {
		t.Errorf("unset: %v", err)
	}
	t.Setenv(AssetsEnv, t.TempDir())
	if _, err := Assets(); err == nil || !strings.Contains(err.Error(), "no executable kube-apiserver") {
		t.Errorf("empty dir: %v", err)
	}
}
