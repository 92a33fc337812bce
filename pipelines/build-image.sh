#!/usr/bin/env bash
# Builds the backend image and pushes it as $REGISTRY/$IMAGE:<commit sha>, and as :latest on main.
#
# Usage: pipelines/build-image.sh [--dry-run]
#   --dry-run  print the docker commands instead of running them (no Docker engine needed)
# Environment:
#   REGISTRY, IMAGE                      required, e.g. registry.example.com and minishop/backend
#   REGISTRY_USER, REGISTRY_PASSWORD     optional; when both are set, docker login runs first
#   CI_COMMIT_SHA (GitLab) or GIT_COMMIT (Jenkins); else `git rev-parse HEAD`
#   CI_COMMIT_BRANCH (GitLab) or BRANCH_NAME (Jenkins); else the checked-out branch
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=false
case ${1:-} in
  --dry-run) dry_run=true ;;
  "") ;;
  *)
    echo "usage: $0 [--dry-run]" >&2
    exit 2
    ;;
esac

for var in REGISTRY IMAGE; do
  if [[ -z ${!var:-} ]]; then
    echo "build-image: $var is not set (e.g. REGISTRY=registry.example.com IMAGE=minishop/backend)" >&2
    exit 1
  fi
done

commit=${CI_COMMIT_SHA:-${GIT_COMMIT:-$(git rev-parse HEAD)}}
branch=${CI_COMMIT_BRANCH:-${BRANCH_NAME:-$(git rev-parse --abbrev-ref HEAD)}}
repo=$REGISTRY/$IMAGE
tags=("$repo:$commit")
if [[ $branch == main ]]; then
  tags+=("$repo:latest")
fi

run() {
  if $dry_run; then
    echo "+ $*"
  else
    "$@"
  fi
}

if [[ -n ${REGISTRY_USER:-} && -n ${REGISTRY_PASSWORD:-} ]]; then
  # On stdin, so the password shows neither in the process list nor in the dry-run output.
  run docker login --username "$REGISTRY_USER" --password-stdin "$REGISTRY" <<<"$REGISTRY_PASSWORD"
fi

build=(docker build --pull --label "org.opencontainers.image.revision=$commit")
for tag in "${tags[@]}"; do
  build+=(--tag "$tag")
done
run "${build[@]}" .
for tag in "${tags[@]}"; do
  run docker push "$tag"
done
