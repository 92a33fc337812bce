#!/usr/bin/env bash
# Builds Helm (helm.sh/helm/v3 v3.22.0) for the chart's tests (backend/tests/platform/test_helm.py).
# There is no helm in apt, PyPI or npm here, so it comes from the Go module proxy with `go install`,
# with upstream's release -ldflags (its Makefile): without them helm reports an empty version and
# assumes Kubernetes v1.20.0 for .Capabilities.KubeVersion and for `helm lint`'s deprecation
# check. Upstream derives that Kubernetes version from the client-go it is built with (client-go
# v0.N -> Kubernetes 1.N); so does this script, from the module's go.mod.
#
# Idempotent: the binary goes to $HELM_DIR/bin (default ~/.cache/minishop/helm), outside the
# checkout so that CI's fresh clones reuse it, and is rebuilt only when this script or the Go
# version changed. Cold (empty Go module and build caches) it took 5.75 min on this project's
# 2-core machine while other builds ran (about 4.5 min idle); seconds with Go's build cache warm.
set -euo pipefail
cd "$(dirname "$0")/.."

version=v3.22.0
dir=${HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minishop/helm}
bin=$dir/bin
stamp=$dir/stamp

PATH=$PATH:/usr/local/go/bin # where the machine image keeps Go, when a login shell did not add it
if ! command -v go >/dev/null; then
  echo "build-helm: no go on PATH; Go >= 1.25 is needed to build Helm $version" >&2
  exit 1
fi

inputs=$({
  go version
  sha256sum pipelines/build-helm.sh
} | sha256sum)
if [[ -x $bin/helm && -f $stamp && $(<"$stamp") == "$inputs" ]]; then
  echo "build-helm: up to date in $bin"
  exit 0
fi

# The Kubernetes version helm assumes, as upstream's Makefile computes it: client-go v0.X.Y -> 1.X.
go_mod=$(go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
client_go=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$go_mod")
if [[ ! $client_go =~ ^[0-9]+$ ]]; then
  echo "build-helm: no k8s.io/client-go version in $go_mod" >&2
  exit 1
fi

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in pkg/chartutil pkg/lint/rules; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$client_go"
done

mkdir -p "$bin"
echo "build-helm: building helm $version (Kubernetes 1.$client_go) into $bin (minutes when cold)"
start=$SECONDS
GOBIN=$bin go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@$version"
printf '%s\n' "$inputs" >"$stamp"
echo "build-helm: built in $((SECONDS - start)) s"
