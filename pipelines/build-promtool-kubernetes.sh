#!/usr/bin/env bash
# Builds .venv/bin/promtool-kubernetes: Prometheus's promtool 2.42.0 (the Debian package's version)
# with Kubernetes service discovery, from the Go module proxy.
#
# Debian builds Prometheus without Kubernetes discovery, so its promtool (and server) reject the
# `kubernetes_sd_configs` of observability/prometheus/prometheus.yml. Prometheus chooses its
# discovery mechanisms at build time in plugins/plugins.go (upstream's plugins.yml): this writes
# that file with Kubernetes only (file and HTTP discovery are always in) and builds promtool.
# Cold: about 4 minutes of CPU; seconds once the Go build cache is warm. Nothing is done when the
# binary exists. Needs Go (installed on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."

module=github.com/prometheus/prometheus
version=v0.42.0 # Prometheus 2.42.0
out=$PWD/.venv/bin/promtool-kubernetes

[[ -x $out ]] && exit 0
if ! command -v go >/dev/null; then
  echo "build-promtool-kubernetes: Go is needed to build promtool with Kubernetes discovery" >&2
  exit 1
fi

source_dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $source_dir ]] || {
  echo "build-promtool-kubernetes: go mod download gave no source directory" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$source_dir/." "$work"
chmod -R u+w "$work"
cat >"$work/plugins/plugins.go" <<'GO'
// Written by pipelines/build-promtool-kubernetes.sh: Kubernetes discovery only.

package plugins

import (
	// Register kubernetes plugin.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
GO
mkdir -p "$(dirname "$out")"
echo "build-promtool-kubernetes: building promtool $version with Kubernetes discovery"
(cd "$work" && go build -trimpath -o "$out.tmp" ./cmd/promtool)
mv "$out.tmp" "$out"
