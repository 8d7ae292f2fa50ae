package envtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

// kustomization is the subset of kustomize's Kustomization (and Component)
// that podwall's deploy/ uses. Render decodes strictly, so a kustomization
// using anything else fails rather than being rendered wrongly.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources,omitempty"`
	Components []string `json:"components,omitempty"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// Render renders the kustomization in dir the way `kustomize build` does
// for the features deploy/ uses: resources (files and directories with a
// kustomization), components, and images. Extra components (directories)
// are added as an overlay listing them would. Objects come out in
// resource order.
func Render(dir string, components ...string) ([]*unstructured.Unstructured, error) {
	k, err := readKustomization(dir, "Kustomization")
	if err != nil {
		return nil, err
	}
	objs, err := renderResources(dir, k.Resources)
	if err != nil {
		return nil, err
	}
	comps := append([]string(nil), k.Components...)
	for _, c := range components {
		rel, err := filepath.Rel(dir, c)
		if err != nil {
			return nil, err
		}
		comps = append(comps, rel)
	}
	for _, c := range comps {
		cdir := filepath.Join(dir, c)
		ck, err := readKustomization(cdir, "Component")
		if err != nil {
			return nil, err
		}
		if len(ck.Components) > 0 || len(ck.Images) > 0 {
			return nil, fmt.Errorf("%s: only resources are supported in a component", cdir)
		}
		more, err := renderResources(cdir, ck.Resources)
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, img := range k.Images {
		for _, o := range objs {
			if err := setImage(o, img.Name, img.NewName, img.NewTag, img.Digest); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}

func readKustomization(dir, kind string) (*kustomization, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k := &kustomization{}
	if err := yaml.UnmarshalStrict(data, k); err != nil {
		return nil, fmt.Errorf("%s: %w (the test renderer supports resources, components and images only)", path, err)
	}
	if k.Kind != kind {
		return nil, fmt.Errorf("%s: kind %q, want %s", path, k.Kind, kind)
	}
	return k, nil
}

func renderResources(dir string, resources []string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, r := range resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			more, err := Render(p)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
			continue
		}
		docs, err := readDocuments(p)
		if err != nil {
			return nil, err
		}
		for i, d := range docs {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(d, &u.Object); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", p, i+1, err)
			}
			if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
				return nil, fmt.Errorf("%s: document %d has no apiVersion, kind or name", p, i+1)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// setImage applies one images entry to the containers of a workload.
func setImage(o *unstructured.Unstructured, name, newName, newTag, digest string) error {
	for _, field := range []string{"containers", "initContainers"} {
		path := []string{"spec", "template", "spec", field}
		cs, found, err := unstructured.NestedSlice(o.Object, path...)
		if err != nil || !found {
			continue
		}
		for i, c := range cs {
			cm, ok := c.(map[string]any)
			if !ok {
				continue
			}
			image, _ := cm["image"].(string)
			base, tag := image, ""
			if at := strings.Index(image, "@"); at >= 0 {
				base = image[:at]
			} else if colon := strings.LastIndex(image, ":"); colon > strings.LastIndex(image, "/") {
				base, tag = image[:colon], image[colon+1:]
			}
			if base != name {
				continue
			}
			if newName != "" {
				base = newName
			}
			switch {
			case digest != "":
				image = base + "@" + digest
			case newTag != "":
				image = base + ":" + newTag
			case tag != "":
				image = base + ":" + tag
			default:
				image = base
			}
			cm["image"] = image
			cs[i] = cm
		}
		if err := unstructured.SetNestedSlice(o.Object, cs, path...); err != nil {
			return err
		}
	}
	return nil
}
