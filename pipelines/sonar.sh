#!/usr/bin/env bash
# Sends the code and the test job's coverage (reports/coverage.xml) to SonarQube. Settings are in
# sonar-project.properties; the server comes from the environment.
#
# Usage: pipelines/sonar.sh
# Environment: SONAR_HOST_URL, SONAR_TOKEN (required); sonar-scanner on PATH (the
# sonarsource/sonar-scanner-cli image in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

for var in SONAR_HOST_URL SONAR_TOKEN; do
  if [[ -z ${!var:-} ]]; then
    echo "sonar: $var is not set" >&2
    exit 1
  fi
done
if [[ ! -f reports/coverage.xml ]]; then
  echo "sonar: reports/coverage.xml is missing; run pipelines/test.sh first" >&2
  exit 1
fi
exec sonar-scanner -Dsonar.host.url="$SONAR_HOST_URL" -Dsonar.token="$SONAR_TOKEN"
