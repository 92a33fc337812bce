#!/usr/bin/env bash
# Shared by pipelines/deploy.sh and pipelines/rollback.sh (sourced, not run).

ENVIRONMENTS=(dev test staging prod)

# The one argument, checked against ENVIRONMENTS; usage and exit 2 otherwise. $1: the caller's name.
helm_environment() {
  local caller=$1
  shift
  if [[ $# -ge 1 ]]; then
    local environment
    for environment in "${ENVIRONMENTS[@]}"; do
      if [[ $1 == "$environment" ]]; then
        echo "$1"
        return 0
      fi
    done
  fi
  local IFS='|'
  echo "usage: pipelines/$caller.sh <${ENVIRONMENTS[*]}> (got '${1:-}')" >&2
  exit 2
}

dry_run() {
  [[ ${DRY_RUN:-0} == 1 ]]
}

# The helm binary: $HELM, helm on PATH, or the one pipelines/build-helm.sh builds (building it
# when that script is in the checkout).
find_helm() {
  if [[ -n ${HELM:-} ]]; then
    echo "$HELM"
    return 0
  fi
  if command -v helm >/dev/null; then
    command -v helm
    return 0
  fi
  local cached=${HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minishop/helm}/bin/helm
  if [[ ! -x $cached && -x pipelines/build-helm.sh ]]; then
    pipelines/build-helm.sh >&2
  fi
  if [[ -x $cached ]]; then
    echo "$cached"
    return 0
  fi
  echo "$1: no helm found: set HELM, put helm on PATH or run pipelines/build-helm.sh" >&2
  exit 1
}

# Prints the command, then runs it.
helm_run() {
  echo "+ helm ${*:2}" >&2
  "$@"
}
