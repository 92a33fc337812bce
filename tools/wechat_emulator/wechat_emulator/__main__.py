"""`python -m wechat_emulator`: serve the emulator with werkzeug's threaded server.

Prints one line, `wechat-emulator listening on http://HOST:PORT`, once the socket is bound
(with `--port 0` that is how the caller learns the port), then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from werkzeug.serving import make_server

from . import create_app
from .config import EmulatorConfig


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m wechat_emulator",
        description=(
            "Emulate WeChat's mini-program, WeCom and WeChat Pay v3 APIs "
            "(control API: /__emulator/)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (default 8001)")
    parser.add_argument("--appid", help="mini-program appid (env WECHAT_APPID)")
    parser.add_argument("--secret", help="mini-program secret (env WECHAT_SECRET)")
    parser.add_argument("--corpid", help="WeCom corpid (env WECOM_CORPID)")
    parser.add_argument("--corpsecret", help="WeCom app secret (env WECOM_CORPSECRET)")
    parser.add_argument("--agentid", type=int, help="WeCom app agentid (env WECOM_AGENTID)")
    parser.add_argument("--mchid", help="WeChat Pay merchant id (env WECHATPAY_MCHID)")
    parser.add_argument("--quiet", action="store_true", help="do not log every request")
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    try:
        config = EmulatorConfig.from_env()
    except ValueError as error:
        sys.exit(f"wechat-emulator: {error}")
    overrides = {
        name: getattr(args, name)
        for name in ("appid", "secret", "corpid", "corpsecret", "agentid")
        if getattr(args, name) is not None
    }
    config = dataclasses.replace(config, **overrides)
    if args.mchid is not None:
        try:
            pay = dataclasses.replace(config.pay, mchid=args.mchid)
            config = dataclasses.replace(config, pay=pay)
        except ValueError as error:
            sys.exit(f"wechat-emulator: {error}")
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        app = create_app(config)
    except (OSError, ValueError) as error:  # an unreadable or wrong Pay key file
        sys.exit(f"wechat-emulator: {error}")
    server = make_server(args.host, args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, _stop)
    print(
        f"wechat-emulator listening on http://{args.host}:{server.server_port} "
        f"(appid {config.appid}, corpid {config.corpid}, mchid {config.pay.mchid})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
