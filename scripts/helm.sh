#!/usr/bin/env bash
# Runs the project's pinned Helm, building it first from the Go module proxy
# (`go install helm.sh/helm/v3/cmd/helm@VERSION`) into .tools/go/ (ignored by
# git) when it is not there yet. Needs Go 1.24 or newer on PATH; a cold install
# downloads and compiles Helm and its Kubernetes libraries (a few minutes on two
# cores), later runs exec the installed binary at once.
#
#   scripts/helm.sh lint deploy/helm/activity-aggregate-updater
#   scripts/helm.sh template aau deploy/helm/activity-aggregate-updater
set -euo pipefail
HELM_VERSION=v3.22.0
# Set at build time the way Helm's own Makefile does: without them a `go
# install` build calls itself "v3.22" and renders for Kubernetes v1.20 (the
# default .Capabilities.KubeVersion), not for the version of client-go it is
# built with (v0.37.0 in Helm v3.22.0's go.mod, i.e. Kubernetes 1.37).
K8S_MINOR=37
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata="
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bindir="$root/.tools/go/helm-$HELM_VERSION"
helm="$bindir/helm"

if [ ! -x "$helm" ]; then
  command -v go >/dev/null 2>&1 || { echo "helm.sh: Go is needed to install Helm (go install)" >&2; exit 1; }
  mkdir -p "$root/.tools/go"
  # One install at a time (tests may call this concurrently on a fresh machine).
  exec 9>"$root/.tools/go/.helm.lock"
  flock 9
  if [ ! -x "$helm" ]; then
    echo "helm.sh: installing helm $HELM_VERSION with $(go version | cut -d' ' -f3) into .tools/go/ (go install, once)" >&2
    tmp="$(mktemp -d "$root/.tools/go/.helm.XXXXXX")"
    GOBIN="$tmp" GOFLAGS=-buildvcs=false go install -ldflags "$LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mkdir -p "$bindir"
    mv "$tmp/helm" "$helm"
    rmdir "$tmp"
  fi
  exec 9>&-
fi
exec "$helm" "$@"
