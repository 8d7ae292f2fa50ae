// Package manifest reads Kubernetes manifests (files, directories, stdin;
// multi-document YAML or JSON; List kinds) into typed objects, and expands
// workloads into the pods they would create.
//
// Loading is all or nothing: any error (unreadable input, malformed YAML or
// JSON, an unknown or duplicated field in a built-in kind, a document without
// apiVersion, kind or name, two definitions of the same object) aborts the
// whole load, because a checker that silently skips part of its input reports
// on a cluster nobody has. Errors are *Error values whose message is a single
// line naming the file, the document and, when known, the object.
package manifest
