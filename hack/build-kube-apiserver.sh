#!/usr/bin/env bash
# Builds kube-apiserver from source (k8s.io/kubernetes via the Go module proxy,
# pinned in hack/tools/kube-apiserver/go.mod) and lays out bin/k8s/ so that
#
#   KUBEBUILDER_ASSETS="$(pwd)/bin/k8s" go test ./...
#
# lets sigs.k8s.io/controller-runtime/pkg/envtest start a real kube-apiserver
# and etcd. No prebuilt binaries are downloaded: etcd comes from the Debian
# package etcd-server (see hack/install-test-deps.sh).
#
# Idempotent: the (slow, ~10 minutes on 2 cores when the build cache is cold)
# build is skipped when bin/kube-apiserver-${KUBE_VERSION} already exists.
#
# Environment:
#   ETCD_BIN        etcd binary to link into bin/k8s (default: etcd on PATH,
#                   then /usr/bin/etcd)
#   FORCE_REBUILD=1 rebuild kube-apiserver even if the binary exists
#
# The Go build runs with GOFLAGS=-mod=readonly and GOWORK=off, so it never
# rewrites hack/tools/kube-apiserver/go.{mod,sum}; after changing that go.mod,
# run `go mod tidy` in hack/tools/kube-apiserver.
set -euo pipefail

# Keep in sync with the require line in hack/tools/kube-apiserver/go.mod.
KUBE_VERSION="v1.37.2"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${ROOT}/hack/tools/kube-apiserver"
BIN_DIR="${ROOT}/bin"
ASSETS_DIR="${BIN_DIR}/k8s"
APISERVER_BIN="${BIN_DIR}/kube-apiserver-${KUBE_VERSION}"

log() { echo "build-kube-apiserver: $*" >&2; }
die() { echo "build-kube-apiserver: ERROR: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"
[[ -f "${TOOLS_DIR}/go.mod" ]] || die "missing ${TOOLS_DIR}/go.mod"

pinned="$(cd "${TOOLS_DIR}" && GOWORK=off GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' k8s.io/kubernetes 2>/dev/null || true)"
if [[ "${pinned}" != "${KUBE_VERSION}" ]]; then
	die "KUBE_VERSION=${KUBE_VERSION} but hack/tools/kube-apiserver/go.mod pins k8s.io/kubernetes ${pinned:-<unknown>}; keep them in sync"
fi

# --- kube-apiserver -----------------------------------------------------------
if [[ -x "${APISERVER_BIN}" && "${FORCE_REBUILD:-0}" != "1" ]]; then
	log "kube-apiserver ${KUBE_VERSION} already built: bin/$(basename "${APISERVER_BIN}")"
else
	mkdir -p "${BIN_DIR}"
	major="${KUBE_VERSION#v}"; major="${major%%.*}"
	minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
		ldflags+=" -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
		ldflags+=" -X ${pkg}.gitTreeState=clean"
	done
	tmp="${APISERVER_BIN}.tmp.$$"
	trap 'rm -f "${tmp}"' EXIT
	log "building kube-apiserver ${KUBE_VERSION} from source (this takes a while on a cold build cache)..."
	start=$(date +%s)
	if ! (cd "${TOOLS_DIR}" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
		go build -trimpath -ldflags "${ldflags}" -o "${tmp}" k8s.io/kubernetes/cmd/kube-apiserver); then
		die "go build of k8s.io/kubernetes/cmd/kube-apiserver ${KUBE_VERSION} failed (see output above)"
	fi
	mv -f "${tmp}" "${APISERVER_BIN}"
	trap - EXIT
	log "built bin/$(basename "${APISERVER_BIN}") in $(( $(date +%s) - start ))s ($(du -h "${APISERVER_BIN}" | cut -f1))"
fi
"${APISERVER_BIN}" --version >/dev/null 2>&1 || die "bin/$(basename "${APISERVER_BIN}") does not run; delete it and re-run this script"

# --- etcd ---------------------------------------------------------------------
etcd_bin="${ETCD_BIN:-}"
if [[ -z "${etcd_bin}" ]]; then
	etcd_bin="$(command -v etcd 2>/dev/null || true)"
	[[ -n "${etcd_bin}" ]] || etcd_bin="/usr/bin/etcd"
fi
if [[ ! -x "${etcd_bin}" ]]; then
	die "etcd not found (looked for ETCD_BIN, etcd on PATH, /usr/bin/etcd); install it with: apt-get install -y etcd-server (or run hack/install-test-deps.sh)"
fi
"${etcd_bin}" --version >/dev/null 2>&1 || die "${etcd_bin} --version failed"

# --- bin/k8s (KUBEBUILDER_ASSETS) --------------------------------------------
mkdir -p "${ASSETS_DIR}"
ln -sfn "../$(basename "${APISERVER_BIN}")" "${ASSETS_DIR}/kube-apiserver"
ln -sfn "${etcd_bin}" "${ASSETS_DIR}/etcd"

log "$("${ASSETS_DIR}/kube-apiserver" --version 2>&1 | head -n1), $("${ASSETS_DIR}/etcd" --version 2>&1 | head -n1)"
log "ready: export KUBEBUILDER_ASSETS=\"${ASSETS_DIR}\""
