#!/usr/bin/env bash
# `make run`: the WeChat emulator on 127.0.0.1:8001 (unless WECHAT_API_BASE points elsewhere)
# and the backend under gunicorn on 127.0.0.1:${PORT:-8000}. Ctrl-C stops both.
# With the emulator, WeChat Pay points at it too, with development keys kept in
# backend/instance/wechatpay-dev (made once by python -m wechat_emulator.devkeys).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$PWD/.venv/bin

if [[ -z "${WECHAT_API_BASE:-}" ]]; then
  emulator_url="http://127.0.0.1:${EMULATOR_PORT:-8001}"
  keys=$PWD/backend/instance/wechatpay-dev
  "$venv/python" -m wechat_emulator.devkeys "$keys"
  EMULATOR_PAY_MERCHANT_PUBLIC_KEY=$keys/apiclient_pub.pem \
    EMULATOR_PAY_PLATFORM_PRIVATE_KEY=$keys/platform_key.pem \
    "$venv/python" -m wechat_emulator --host 127.0.0.1 --port "${EMULATOR_PORT:-8001}" &
  emulator_pid=$!
  trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
  export WECHAT_API_BASE=$emulator_url
  export WECHATPAY_API_BASE=${WECHATPAY_API_BASE:-$emulator_url}
  export WECHATPAY_PRIVATE_KEY_FILE=${WECHATPAY_PRIVATE_KEY_FILE:-$keys/apiclient_key.pem}
  export WECHATPAY_PUBLIC_KEY_FILE=${WECHATPAY_PUBLIC_KEY_FILE:-$keys/platform_pub.pem}
  export WECHATPAY_PUBLIC_KEY_ID=${WECHATPAY_PUBLIC_KEY_ID:-PUB_KEY_ID_0119000000012026000000000000000001}
  export WECHATPAY_NOTIFY_URL=${WECHATPAY_NOTIFY_URL:-http://127.0.0.1:${PORT:-8000}/api/v1/payments/wechat/notify}
  # The same settings for the jobs run by hand (orders expire, payments reconcile):
  # set -a; . backend/instance/wechatpay-dev/env; set +a
  for name in WECHAT_API_BASE WECHATPAY_API_BASE WECHATPAY_PRIVATE_KEY_FILE WECHATPAY_PUBLIC_KEY_FILE \
              WECHATPAY_PUBLIC_KEY_ID WECHATPAY_NOTIFY_URL; do
    printf '%s=%q\n' "$name" "${!name}"
  done > "$keys/env"
fi

cd backend
"$venv/gunicorn" -c gunicorn.conf.py 'minishop:create_app()'
