package rules

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// sources are the bundle's files as they are in this directory: the
// .manifest (roots ["podwall"]) and the Rego under podwall/, tests included.
//
//go:embed .manifest podwall
var sources embed.FS

// Sources returns the Rego sources laid out as the bundle directory that
// `podwall opa build -b rules/` reads: .manifest and podwall/..., with the
// *_test.rego files.
func Sources() fs.FS { return sources }

// Roots are the bundle's roots: it owns data.podwall, policies and data.
var Roots = []string{"podwall"}

// Bundle builds the embedded admission rules into an OPA bundle, as
// `podwall opa build -b . --ignore '*_test.rego' --revision REVISION` run in
// rules/ does: the .manifest's roots, the given revision, the modules compiled
// (with the podwall built-ins) and formatted, tests left out. Add the
// AdmissionConfiguration to the bundle's Data under podwall.config to
// ship it with the rules to a stock OPA server.
func Bundle(revision string) (*bundle.Bundle, error) {
	return BuildBundle(context.Background(), Sources(), revision)
}

// BuildBundle builds the bundle directory at the root of fsys (a .manifest
// and Rego files) the way `opa build -b` does, leaving out *_test.rego. Its
// modules must compile with the podwall built-ins; the errors are the
// compiler's.
func BuildBundle(ctx context.Context, fsys fs.FS, revision string) (*bundle.Bundle, error) {
	c := compile.New().
		WithFS(fsys).
		WithPaths(".").
		WithAsBundle(true).
		WithRegoVersion(ast.RegoV1).
		WithCapabilities(Capabilities()).
		WithFilter(ignoreTests).
		WithRevision(revision)
	if err := c.Build(ctx); err != nil {
		return nil, fmt.Errorf("building the podwall bundle: %w", err)
	}
	return c.Bundle(), nil
}

// ignoreTests leaves Rego unit tests out of a bundle, as
// `opa build --ignore '*_test.rego'` does.
func ignoreTests(_ string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

// WriteBundle writes b as the gzipped tarball `opa build` writes
// (bundle.tar.gz: /.manifest, /data.json and the modules).
func WriteBundle(w io.Writer, b *bundle.Bundle) error {
	return bundle.NewWriter(w).Write(*b)
}

// ReadBundle reads a gzipped bundle tarball with OPA's bundle reader.
func ReadBundle(r io.Reader) (*bundle.Bundle, error) {
	b, err := bundle.NewReader(r).WithRegoVersion(ast.RegoV1).WithCapabilities(Capabilities()).Read()
	if err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	return &b, nil
}

// BundleBytes builds the embedded rules and returns the tarball.
func BundleBytes(revision string) ([]byte, error) {
	b, err := Bundle(revision)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := WriteBundle(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
