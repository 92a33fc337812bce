#!/usr/bin/env bash
# Rolls an environment's MiniShop release back with Helm: to the previous revision, or to the
# one given (`helm history minishop -n minishop-<environment>` lists them), waiting until ready.
#
# Usage: pipelines/rollback.sh <dev|test|staging|prod> [revision]
# Environment: RELEASE, NAMESPACE, DEPLOY_TIMEOUT, HELM as for pipelines/deploy.sh;
#   DRY_RUN=1 prints the helm command without running it (no cluster needed).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=pipelines/helm-common.sh
. pipelines/helm-common.sh

revision=${2:-}
if [[ -n $revision && ! $revision =~ ^[1-9][0-9]*$ ]]; then
  echo "rollback: the revision must be a positive number, not '$revision'" >&2
  exit 2
fi
environment=$(helm_environment rollback "${1:-}")
release=${RELEASE:-minishop}
namespace=${NAMESPACE:-minishop-$environment}

echo "rollback: release $release in namespace $namespace to ${revision:-the previous revision}" >&2
command=(rollback "$release")
if [[ -n $revision ]]; then
  command+=("$revision")
fi
command+=(--namespace "$namespace" --wait --timeout "${DEPLOY_TIMEOUT:-10m}")
if dry_run; then
  echo "+ helm ${command[*]}" >&2
else
  helm=$(find_helm rollback)
  helm_run "$helm" "${command[@]}"
fi
