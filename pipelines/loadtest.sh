#!/usr/bin/env bash
# The Locust smoke run of CI: a short journey (default 10 users, 30 s) against a stack this
# script starts (MariaDB, Redis, the WeChat emulator, gunicorn), judged by loadtest/thresholds.yml.
# Reports: reports/loadtest_*.csv and reports/loadtest.html. `make loadtest` runs the long version.
set -euo pipefail
cd "$(dirname "$0")/.."

pipelines/install-system-deps.sh --check-or-install bench
make -s dev-deps
mkdir -p reports
LOADTEST_USERS=${LOADTEST_USERS:-10} LOADTEST_DURATION=${LOADTEST_DURATION:-30} \
  exec .venv/bin/python loadtest/run_loadtest.py
