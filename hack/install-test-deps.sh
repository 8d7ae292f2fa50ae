#!/usr/bin/env bash
# Installs what the integration tests need on a Debian machine and builds the
# envtest assets (bin/k8s: kube-apiserver built from source + Debian's etcd).
#
# Idempotent: apt-get runs only when a package is missing, and the
# kube-apiserver build is skipped when the binary already exists.
#
# Packages:
#   etcd-server  etcd for envtest
#   etcd-client  etcdctl, handy for debugging
#   iproute2, nftables, conntrack  for the dataplane tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "install-test-deps: $*" >&2; }
# Without PODWALL_REQUIRE_TEST_DEPS=1 (CI sets it) a machine that cannot
# install is not an error: the integration tests then skip and say why.
die() {
	echo "install-test-deps: ERROR: $*" >&2
	if [[ "${PODWALL_REQUIRE_TEST_DEPS:-0}" == "1" ]]; then exit 1; fi
	echo "install-test-deps: continuing; tests needing these will skip" >&2
	exit 0
}

PACKAGES=(etcd-server etcd-client iproute2 nftables conntrack)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${db:Status-Status}' "${pkg}" 2>/dev/null || true)"
	[[ "${status}" == "installed" ]] || missing+=("${pkg}")
done

if ((${#missing[@]} > 0)); then
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: ${missing[*]}"
	SUDO=()
	if [[ "$(id -u)" != "0" ]]; then
		command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install manually: ${missing[*]}"
		SUDO=(sudo)
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		|| die "apt-get install ${missing[*]} failed"
else
	log "packages already installed: ${PACKAGES[*]}"
fi

# The etcd-server package enables a systemd unit; envtest starts its own etcd
# on random ports, so a system etcd is not needed (and is harmless if running).

exec "${ROOT}/hack/build-kube-apiserver.sh"
