#!/usr/bin/env bash
# Every static check of the repository, each file checked by the tool that consumes it.
# All checks run even when one fails; a summary names the failed ones and the exit code is 1.
set -euo pipefail
cd "$(dirname "$0")/.."

pipelines/install-system-deps.sh --check-or-install lint
make -s dev-deps

venv=$PWD/.venv/bin
# tools/ci-lint pins gitlab-ci-local, npm-groovy-lint and the Node.js they run on.
PATH=$PWD/tools/ci-lint/node_modules/.bin:$PATH
# groovy looks for Java only in JAVA_HOME (default /usr/lib/jvm/default-java, absent when the JRE
# did not come from default-jre-headless), so point it at the java on PATH.
JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}
export JAVA_HOME

# Every file named $1 in the repository, apart from installed and generated trees.
repo_files() {
  find . \( -path ./.git -o -path ./.venv -o -name node_modules -o -path ./reports \) -prune \
    -o -type f -name "$1" -print
}

in_backend() { (cd backend && "$@"); }

# Syntax errors make GroovyShell.parse throw, and the uncaught exception exits groovy non-zero.
parse_jenkinsfile() {
  groovy -e "new GroovyShell().parse(new File('Jenkinsfile'))"
}

failed=()
check() {
  echo "--- $1"
  if ! "${@:2}"; then
    failed+=("$1")
  fi
}

mapfile -t shell_files < <(repo_files '*.sh')

check "ruff check" in_backend "$venv/ruff" check .
check "ruff format" in_backend "$venv/ruff" format --check .
check "mypy" in_backend "$venv/mypy"
check "ruff (emulator)" in_backend "$venv/ruff" check ../tools/wechat_emulator
check "ruff format (emulator)" in_backend "$venv/ruff" format --check ../tools/wechat_emulator
check "mypy (emulator)" "$venv/mypy" --strict tools/wechat_emulator/wechat_emulator
check "ruff (loadtest)" in_backend "$venv/ruff" check ../loadtest
check "ruff format (loadtest)" in_backend "$venv/ruff" format --check ../loadtest
check "mypy (loadtest)" in_backend env MYPYPATH=../tools/wechat_emulator "$venv/mypy" ../loadtest
check "ruff (observability)" in_backend "$venv/ruff" check ../observability ../tools/observability_up.py
check "ruff format (observability)" in_backend "$venv/ruff" format --check ../observability ../tools/observability_up.py
check "ruff (api smoke)" in_backend "$venv/ruff" check ../tools/api_smoke.py
check "ruff format (api smoke)" in_backend "$venv/ruff" format --check ../tools/api_smoke.py
check "mypy (api smoke)" in_backend "$venv/mypy" --strict ../tools/api_smoke.py
check "mypy (dashboards)" "$venv/mypy" --strict --ignore-missing-imports observability/grafana/dashboards.py
check "shellcheck" shellcheck "${shell_files[@]}" .ci/run
check "hadolint" "$venv/hadolint" Dockerfile
check "yamllint" "$venv/yamllint" -c .yamllint.yml --strict .
check "gitlab-ci schema" "$venv/check-jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
check "gitlab-ci-local" gitlab-ci-local --list --state-dir reports/gitlab-ci-local
check "compose schema" "$venv/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
check "docker-compose config" docker-compose -f docker-compose.yml config -q
check "docker-compose config (OpenTelemetry overlay)" docker-compose -f docker-compose.yml \
  -f observability/otel-collector/docker-compose.otel.yml config -q
check "docker-compose config (SkyWalking overlay)" docker-compose -f docker-compose.yml \
  -f observability/skywalking/docker-compose.skywalking.yml config -q
check "Jenkinsfile parse" parse_jenkinsfile
# CodeNarc's Jenkinsfile rules; --noserver, since a server-mode run leaves a Java process behind.
check "Jenkinsfile lint" npm-groovy-lint --noserver --failon warning Jenkinsfile

if ((${#failed[@]})); then
  printf 'lint: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "lint: all checks passed"
