#!/usr/bin/env bash
# Deploys MiniShop to one environment with Helm: `helm upgrade --install --atomic --wait`, so a
# release that does not become ready in time is rolled back by Helm itself and the job fails.
#
# Usage: pipelines/deploy.sh <dev|test|staging|prod>
# Environment:
#   IMAGE_TAG           the image tag to deploy; default the commit (CI_COMMIT_SHA, GIT_COMMIT or HEAD)
#   IMAGE_REPOSITORY    the image repository; default $REGISTRY/$IMAGE when both are set, else the values file's
#   RELEASE             the Helm release name (default minishop)
#   NAMESPACE           default minishop-<environment>
#   DEPLOY_TIMEOUT      how long Helm waits for the release to be ready (default 10m)
#   HELM                the helm binary; default helm on PATH, else the one pipelines/build-helm.sh builds
#   DRY_RUN=1           render the manifests with `helm template` instead (no cluster needed)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=pipelines/helm-common.sh
. pipelines/helm-common.sh

environment=$(helm_environment deploy "$@")
chart=helm/minishop
values=$chart/values-$environment.yaml
if [[ ! -f $values ]]; then
  echo "deploy: $values not found (is the chart in this checkout?)" >&2
  exit 1
fi
release=${RELEASE:-minishop}
namespace=${NAMESPACE:-minishop-$environment}
tag=${IMAGE_TAG:-${CI_COMMIT_SHA:-${GIT_COMMIT:-$(git rev-parse HEAD)}}}
repository=${IMAGE_REPOSITORY:-}
if [[ -z $repository && -n ${REGISTRY:-} && -n ${IMAGE:-} ]]; then
  repository=$REGISTRY/$IMAGE
fi

image_settings=(--set-string "image.tag=$tag")
if [[ -n $repository ]]; then
  image_settings+=(--set-string "image.repository=$repository")
fi

echo "deploy: release $release of $chart to namespace $namespace with $values," \
  "image ${repository:-(repository from the values)}:$tag" >&2
helm=$(find_helm deploy)
if dry_run; then
  helm_run "$helm" template "$release" "$chart" --namespace "$namespace" \
    -f "$values" "${image_settings[@]}"
else
  helm_run "$helm" upgrade --install "$release" "$chart" --namespace "$namespace" --create-namespace \
    -f "$values" "${image_settings[@]}" \
    --atomic --wait --timeout "${DEPLOY_TIMEOUT:-10m}"
fi
