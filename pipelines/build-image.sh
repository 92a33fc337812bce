#!/usr/bin/env bash
# Builds the backend image, tags it by commit and by branch, pushes it when $REGISTRY is set, and
# writes an SBOM (reports/sbom.spdx.json) when syft is installed.
#
# Usage: pipelines/build-image.sh [--dry-run]
#   --dry-run (or DRY_RUN=1)  print the docker/syft commands instead of running them (no Docker needed)
# Environment:
#   IMAGE                              the repository name (default minishop/backend)
#   REGISTRY                           e.g. registry.example.com (Harbor or any registry): push there;
#                                      unset, the image is only built and tagged locally
#   REGISTRY_USER, REGISTRY_PASSWORD   when both are set (with REGISTRY), docker login runs first
#   CI_COMMIT_SHA (GitLab) or GIT_COMMIT (Jenkins); else `git rev-parse HEAD`
#   CI_COMMIT_BRANCH or CI_COMMIT_REF_NAME (GitLab), BRANCH_NAME (Jenkins); else the checked-out branch
# Tags: <commit sha>, <branch> made a valid tag (lowercase, [a-z0-9_.-], at most 128 characters,
# e.g. feature/Pay#2 -> feature-pay-2), and latest on main.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=${DRY_RUN:-0}
case ${1:-} in
  --dry-run) dry_run=1 ;;
  "") ;;
  *)
    echo "usage: $0 [--dry-run]" >&2
    exit 2
    ;;
esac

# A branch name as a Docker tag: invalid characters become '-', no leading '.' or '-'.
branch_tag() {
  local tag
  tag=$(tr '[:upper:]' '[:lower:]' <<<"$1" | sed -e 's/[^a-z0-9_.-]/-/g' -e 's/^[.-]*//')
  echo "${tag:0:128}"
}

commit=${CI_COMMIT_SHA:-${GIT_COMMIT:-$(git rev-parse HEAD)}}
branch=${CI_COMMIT_BRANCH:-${CI_COMMIT_REF_NAME:-${BRANCH_NAME:-$(git rev-parse --abbrev-ref HEAD)}}}
registry=${REGISTRY:-}
registry=${registry%/}
repo=${IMAGE:-minishop/backend}
if [[ -n $registry ]]; then
  repo=$registry/$repo
fi
tags=("$repo:$commit")
branch_tag=$(branch_tag "$branch")
if [[ -n $branch_tag && $branch_tag != HEAD && $branch_tag != head ]]; then
  tags+=("$repo:$branch_tag")
fi
if [[ $branch == main ]]; then
  tags+=("$repo:latest")
fi

run() {
  if [[ $dry_run == 1 ]]; then
    echo "+ $*"
  else
    "$@"
  fi
}

echo "build-image: ${tags[*]}" >&2
if [[ -n $registry && -n ${REGISTRY_USER:-} && -n ${REGISTRY_PASSWORD:-} ]]; then
  # On stdin, so the password shows neither in the process list nor in the dry-run output.
  run docker login --username "$REGISTRY_USER" --password-stdin "$registry" <<<"$REGISTRY_PASSWORD"
fi

build=(docker build --pull --label "org.opencontainers.image.revision=$commit")
for tag in "${tags[@]}"; do
  build+=(--tag "$tag")
done
run "${build[@]}" .

if [[ -n $registry ]]; then
  for tag in "${tags[@]}"; do
    run docker push "$tag"
  done
else
  echo "build-image: REGISTRY is not set: built locally, nothing pushed" >&2
fi

if command -v syft >/dev/null; then
  mkdir -p reports
  run syft scan "${tags[0]}" --output spdx-json=reports/sbom.spdx.json
else
  echo "build-image: no syft on PATH: no SBOM (https://github.com/anchore/syft)" >&2
fi
