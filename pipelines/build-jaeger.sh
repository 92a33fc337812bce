#!/usr/bin/env bash
# Builds the trace tools the platform tests run (backend/tests/platform/test_traces.py): Jaeger v2
# (github.com/jaegertracing/jaeger/cmd/jaeger v1.76.0 = Jaeger 2.13.0) and otelcol-minishop, an
# OpenTelemetry Collector with the components of observability/otel-collector/config.yaml. Both
# come from the Go module observability/tools (versions pinned by its go.sum).
#
# Idempotent: the binaries go to $TRACE_TOOLS_DIR/bin (default ~/.cache/minishop/trace-tools),
# outside the checkout so that CI's fresh clones reuse them, and are rebuilt only when the
# module, this script or the Go version changed. A cold build (empty Go module and build caches)
# took 7 min on this project's 2-core machine (observability/README.md, "Traces"); with Go's
# caches warm a rebuild takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${TRACE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minishop/trace-tools}
bin=$dir/bin
stamp=$dir/stamp

PATH=$PATH:/usr/local/go/bin # where the machine image keeps Go, when a login shell did not add it
if ! command -v go >/dev/null; then
  echo "build-jaeger: no go on PATH; Go >= 1.24 is needed to build Jaeger" >&2
  exit 1
fi

# What the binaries are built from: when this is unchanged and both exist, nothing to do.
inputs=$(
  {
    go version
    sha256sum pipelines/build-jaeger.sh observability/tools/go.mod observability/tools/go.sum
    find observability/tools -name '*.go' -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum
)
if [[ -x $bin/jaeger && -x $bin/otelcol-minishop && -f $stamp && $(<"$stamp") == "$inputs" ]]; then
  echo "build-jaeger: up to date in $bin"
  exit 0
fi

mkdir -p "$bin"
echo "build-jaeger: building jaeger and otelcol-minishop into $bin (minutes when cold)"
start=$SECONDS
(
  cd observability/tools
  # -buildvcs=false: a git worktree's checkout need not be readable as a repository here.
  go build -buildvcs=false -trimpath -ldflags='-s -w' -o "$bin/" \
    github.com/jaegertracing/jaeger/cmd/jaeger ./otelcol-minishop
)
printf '%s\n' "$inputs" >"$stamp"
echo "build-jaeger: built in $((SECONDS - start)) s"
