package manifest_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/podwall/podwall/manifest"
)

// FuzzRead checks that no input panics Read, and that whatever it accepts is
// complete enough for every caller to name: a kind and a name on each object.
func FuzzRead(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Dir(path) == filepath.Join("testdata", "fuzz") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data)
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := manifest.Read(bytes.NewReader(data), "fuzz.yaml")
		if err != nil {
			if s != nil {
				t.Fatal("a failed Read returned a Set")
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		for _, o := range s.Objects() {
			acc, err := meta.Accessor(o.Obj)
			if err != nil {
				t.Fatal(err)
			}
			if o.Obj.GetObjectKind().GroupVersionKind().Kind == "" || acc.GetName() == "" {
				t.Fatalf("object without kind or name from %s: %#v", o.Source, o.Obj)
			}
		}
		// Expansion must not panic either; its errors are fine.
		_, _ = s.AllPods()
	})
}
