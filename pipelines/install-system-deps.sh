#!/usr/bin/env bash
# The one place that names the system tools each pipeline step needs: Debian packages, the npm
# tools pinned in tools/ci-lint, and a promtool with Kubernetes discovery (built with Go by
# pipelines/build-promtool-kubernetes.sh, since Debian's has none).
#
# Usage: pipelines/install-system-deps.sh [--check-or-install] test|lint|bench|all
#   When every binary is present nothing happens. Otherwise, as root, the missing packages are
#   installed with apt-get; as any other user the apt-get command is printed and the exit code is 1.
#   --check-or-install is that (only) behaviour, accepted so that callers can spell it out.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pairs of "binary package". The tests start throwaway MariaDB and Redis servers from these
# binaries (pytest-mysql, pytest-redis).
test_deps=(
  make make
  mariadbd mariadb-server
  mariadbd-safe mariadb-server
  mariadb-admin mariadb-client
  redis-server redis-server
  node nodejs       # runs the mini-program client's tests (clients/miniprogram)
  chromium chromium # renders the API reference page (/docs) in a test
  nginx nginx       # the edge (deploy/edge/nginx.conf) in front of gunicorn: its tests, make bench
  # observability/: promtool and amtool check the configs and run the rule tests; the servers
  # run in the end-to-end alert test.
  prometheus prometheus
  promtool prometheus
  prometheus-alertmanager prometheus-alertmanager
  amtool prometheus-alertmanager
)
# The tests that run the CI configurations for real: ci/jenkins-test with Maven (its JDK comes
# along), and gitlab-ci-local (tools/ci-lint) on a copy of the repository.
ci_config_deps=(
  mvn maven
  npm npm
  git git
  rsync rsync
)
bench_deps=(
  "${test_deps[@]}" # make loadtest / make bench start the same servers the tests use
  wrk wrk           # the load generator of make bench
)
lint_deps=(
  make make
  shellcheck shellcheck
  docker-compose docker-compose
  groovy groovy # parses the Jenkinsfile; pulls in a JRE
  npm npm       # installs tools/ci-lint, which brings its own pinned Node.js
  git git       # gitlab-ci-local reads the repository ...
  rsync rsync   # ... and copies it with rsync
)

[[ ${1:-} == --check-or-install ]] && shift
purpose=${1:-}
case $purpose in
  test) deps=("${test_deps[@]}" "${ci_config_deps[@]}") ;;
  lint) deps=("${lint_deps[@]}") ;;
  bench) deps=("${bench_deps[@]}") ;;
  all) deps=("${bench_deps[@]}" "${ci_config_deps[@]}" "${lint_deps[@]}") ;;
  *)
    echo "usage: $0 [--check-or-install] test|lint|bench|all" >&2
    exit 2
    ;;
esac

# mariadbd lives in /usr/sbin, which is not on a normal user's PATH.
PATH=$PATH:/usr/sbin:/sbin
missing=()
for ((i = 0; i < ${#deps[@]}; i += 2)); do
  command -v "${deps[i]}" >/dev/null || missing+=("${deps[i + 1]}")
done

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u) # one package, several binaries
  install=(apt-get install -y --no-install-recommends "${missing[@]}")
  if ((EUID != 0)); then
    echo "install-system-deps: missing packages for '$purpose'; as root, run:" >&2
    echo "  apt-get update && ${install[*]}" >&2
    exit 1
  fi
  echo "install-system-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${install[@]}"
fi

if [[ $purpose == test || $purpose == all ]]; then
  # Debian's promtool has no Kubernetes discovery; prometheus.yml's check needs one that has.
  pipelines/build-promtool-kubernetes.sh
fi

if [[ $purpose == lint || $purpose == test || $purpose == all ]]; then
  # `npm ci` starts by deleting node_modules, so run it only when the lock is newer than the install.
  if [[ ! tools/ci-lint/node_modules/.package-lock.json -nt tools/ci-lint/package-lock.json ]]; then
    (cd tools/ci-lint && npm ci --no-audit --no-fund)
  fi
fi
