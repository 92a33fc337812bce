#!/usr/bin/env bash
# Smoke tests of a running MiniShop at a base URL (a deployed environment, or `make run`):
# health, readiness, a login, the catalog, a signed order and its cancel (tools/api_smoke.py).
# Exits non-zero with one "api-test: FAILED: ..." line on the first failing step.
#
# Usage: pipelines/api-test.sh <base-url>      e.g. pipelines/api-test.sh http://127.0.0.1:8000
# Environment:
#   EMULATOR_URL          the WeChat emulator's control API for login codes (default http://127.0.0.1:8001)
#   API_TEST_LOGIN_CODE   a login code to use instead, where no emulator runs
#   API_TEST_TIMEOUT      seconds per request (default 10)
set -euo pipefail

if [[ $# -ne 1 || ! $1 =~ ^https?:// ]]; then
  echo "usage: $0 <base-url>  (e.g. http://127.0.0.1:8000)" >&2
  exit 2
fi
base_url=$1
cd "$(dirname "$0")/.."

# The signer is minishop's own (minishop.security.signature), so the package must be importable.
if [[ ! -x .venv/bin/python ]]; then
  make -s deps
fi
if [[ -n ${API_TEST_LOGIN_CODE:-} ]]; then
  echo "api-test: $base_url (login with API_TEST_LOGIN_CODE)"
else
  echo "api-test: $base_url (login codes from ${EMULATOR_URL:-http://127.0.0.1:8001})"
fi
exec .venv/bin/python tools/api_smoke.py "$base_url"
