#!/usr/bin/env bash
# The backend test suite with coverage (threshold in backend/pyproject.toml), against real MariaDB
# and Redis servers that the tests start. Reports: reports/junit.xml and reports/coverage.xml
# (Cobertura). Called by `make test`, GitLab CI and Jenkins; arguments are passed on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

pipelines/install-system-deps.sh --check-or-install test
make -s dev-deps
mkdir -p reports
pipelines/build-jaeger.sh # Jaeger and the Collector for tests/platform/test_traces.py (cached)
pipelines/build-helm.sh # helm for tests/platform/test_helm.py (cached)
pipelines/build-jenkins-test.sh # Maven deps of tests/platform/test_jenkinsfile.py (cached in ~/.m2)

# The WeChat emulator's own suite first: the backend's tests trust it as their WeChat.
.venv/bin/pytest tools/wechat_emulator/tests --junitxml=reports/junit-emulator.xml -q

cd backend
exec ../.venv/bin/pytest --cov --cov-report=term --cov-report=xml:../reports/coverage.xml \
  --junitxml=../reports/junit.xml "$@"
