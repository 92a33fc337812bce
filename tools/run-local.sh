#!/usr/bin/env bash
# `make run`: the WeChat emulator on 127.0.0.1:8001 (unless WECHAT_API_BASE points elsewhere)
# and the backend under gunicorn on 127.0.0.1:${PORT:-8000}. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$PWD/.venv/bin

if [[ -z "${WECHAT_API_BASE:-}" ]]; then
  "$venv/python" -m wechat_emulator --host 127.0.0.1 --port "${EMULATOR_PORT:-8001}" &
  emulator_pid=$!
  trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
  export WECHAT_API_BASE="http://127.0.0.1:${EMULATOR_PORT:-8001}"
fi

cd backend
"$venv/gunicorn" -c gunicorn.conf.py 'minishop:create_app()'
