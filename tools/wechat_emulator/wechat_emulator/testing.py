"""Run the emulator as a subprocess from a test suite, and drive it through its control API.

    with EmulatorProcess() as emulator:
        settings = TestingSettings(WECHAT_API_BASE=emulator.base_url)
        login = emulator.control.new_login_code()
        ...  # the backend exchanges login.code; the emulator answers login.openid

The process listens on a free loopback port that it picks itself (`--port 0`) and announces,
so parallel test sessions never race for a port. Only the standard library is used here, so
importing this module adds no test dependency.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

_LISTENING = re.compile(r"listening on (http://\S+)")
# No proxy from the environment may stand between a test and its loopback emulator.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """The emulator process could not be started or did not become healthy."""


class EmulatorControlError(RuntimeError):
    """The control API refused a request (a bug in the test, usually): status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LoginCode:
    """A wx.login code and the openid jscode2session will answer for it."""

    code: str
    openid: str


@dataclass(frozen=True)
class PayKeys:
    """What a WeChat Pay merchant configures (PEM strings). merchant_private_key is set only
    when the emulator generated the merchant key pair itself: a test-only convenience."""

    mchid: str
    appid: str
    merchant_serial: str
    apiv3_key: str
    public_key_id: str
    platform_public_key: str
    platform_serial: str
    platform_certificate: str
    merchant_private_key: str | None

    def merchant_settings(self, folder: Path) -> dict[str, str]:
        """MiniShop's WeChat Pay settings for this merchant (PEM files written to `folder`);
        WECHATPAY_API_BASE and WECHATPAY_NOTIFY_URL are the caller's to add."""
        if self.merchant_private_key is None:
            raise EmulatorError("the emulator did not generate the merchant key: no private key")
        folder.mkdir(parents=True, exist_ok=True)
        private_key, public_key = folder / "apiclient_key.pem", folder / "pub_key.pem"
        private_key.write_text(self.merchant_private_key)
        private_key.chmod(0o600)
        public_key.write_text(self.platform_public_key)
        return {
            "WECHAT_APPID": self.appid,
            "WECHATPAY_MCHID": self.mchid,
            "WECHATPAY_MERCHANT_SERIAL": self.merchant_serial,
            "WECHATPAY_PRIVATE_KEY_FILE": str(private_key),
            "WECHATPAY_PUBLIC_KEY_ID": self.public_key_id,
            "WECHATPAY_PUBLIC_KEY_FILE": str(public_key),
            "WECHATPAY_APIV3_KEY": self.apiv3_key,
        }


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class EmulatorControl:
    """Typed calls to /__emulator/ (see the README for what each one does)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self.base_url}/__emulator/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http only)
        request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            payload = error.read().decode(errors="replace")
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload
            raise EmulatorControlError(error.code, message) from None

    def health(self) -> bool:
        try:
            return bool(self._call("GET", "health")["status"] == "ok")
        except (OSError, EmulatorControlError):
            return False

    def reset(self) -> None:
        self._call("POST", "reset")

    def new_login_code(self, openid: str | None = None, unionid: str | None = None) -> LoginCode:
        body = {k: v for k, v in {"openid": openid, "unionid": unionid}.items() if v is not None}
        answer = self._call("POST", "codes", body)
        return LoginCode(code=answer["code"], openid=answer["openid"])

    def new_phone_code(self, phone: str, country_code: str = "86") -> str:
        answer = self._call("POST", "phone-codes", {"phone": phone, "country_code": country_code})
        return str(answer["code"])

    def user(self, openid: str) -> dict[str, Any]:
        return dict(self._call("GET", f"users/{urllib.parse.quote(openid, safe='')}"))

    def register_template(self, template_id: str, keywords: list[str] | None = None) -> None:
        body: dict[str, Any] = {"template_id": template_id}
        if keywords is not None:
            body["keywords"] = keywords
        self._call("POST", "templates", body)

    def grant_subscription(self, openid: str, template_id: str, count: int = 1) -> int:
        """Returns how many sends of the template the user now allows."""
        body = {"openid": openid, "template_id": template_id, "count": count}
        return int(self._call("POST", "subscriptions", body)["remaining"])

    def faults(
        self,
        api: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay_ms: int | None = None,
        times: int = 1,
    ) -> dict[str, Any]:
        """Script the next `times` calls of `api` (see the README for the api names)."""
        fields = {"errcode": errcode, "http_status": http_status, "delay_ms": delay_ms}
        body = {"api": api, "times": times, **{k: v for k, v in fields.items() if v is not None}}
        return dict(self._call("POST", "faults", body))

    def pending_faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def calls(self, api: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "calls", query={"api": api} if api else None))

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "messages", query={"kind": kind} if kind else None))

    def advance_clock(self, seconds: float) -> float:
        """Returns the emulator's new now (unix seconds)."""
        return float(self._call("POST", "clock", {"advance_seconds": seconds})["now"])

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings (token_ttl_seconds=60, ...); returns all of them."""
        return dict(self._call("POST", "config", settings))

    def pay_keys(self) -> PayKeys:
        """The merchant's WeChat Pay configuration for this emulator (GET /pay/keys)."""
        answer = self._call("GET", "pay/keys")
        return PayKeys(**{name: answer[name] for name in PayKeys.__dataclass_fields__})

    def pay_succeed(
        self,
        out_trade_no: str,
        *,
        payer_total: int | None = None,
        duplicates: int = 0,
        delay_seconds: float = 0.0,
        corrupt_signature: bool = False,
        amount_override: int | None = None,
    ) -> dict[str, Any]:
        """The user pays the order; returns {"transaction", "notification_id"}."""
        body: dict[str, Any] = {
            "duplicates": duplicates,
            "delay_seconds": delay_seconds,
            "corrupt_signature": corrupt_signature,
        }
        if payer_total is not None:
            body["payer_total"] = payer_total
        if amount_override is not None:
            body["amount_override"] = amount_override
        return dict(self._call("POST", f"pay/{_quote(out_trade_no)}/succeed", body))

    def request_payment(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Check the mini-program payment parameters as wx.requestPayment does; answers
        {"out_trade_no", "transaction"} (a refusal raises EmulatorControlError)."""
        return dict(self._call("POST", "pay/request-payment", params))

    def pay_fail(self, out_trade_no: str) -> dict[str, Any]:
        return dict(self._call("POST", f"pay/{_quote(out_trade_no)}/fail", {}))

    def pay_settings(
        self,
        *,
        retry_scale: float | None = None,
        serial_mode: str | None = None,
        signtest_answers: int | None = None,
    ) -> dict[str, Any]:
        """Change (or, with no argument, read) retry_scale, serial_mode, signtest_answers."""
        fields = {
            "retry_scale": retry_scale,
            "serial_mode": serial_mode,
            "signtest_answers": signtest_answers,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        return dict(self._call("POST", "pay/settings", body))

    def set_refund_outcome(self, status: str) -> None:
        """SUCCESS, ABNORMAL, CLOSED or PROCESSING: what the next refunds become."""
        self._call("POST", "pay/refund-outcome", {"status": status})


class EmulatorProcess:
    """`python -m wechat_emulator` on a free loopback port, healthy once `start()` returns."""

    def __init__(
        self,
        *,
        appid: str | None = None,
        secret: str | None = None,
        corpid: str | None = None,
        corpsecret: str | None = None,
        agentid: int | None = None,
        mchid: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        options = {
            "--appid": appid,
            "--secret": secret,
            "--corpid": corpid,
            "--corpsecret": corpsecret,
            "--agentid": None if agentid is None else str(agentid),
            "--mchid": mchid,
        }
        self.command = [sys.executable, "-m", "wechat_emulator", "--port", "0", "--quiet"]
        for flag, value in options.items():
            if value is not None:
                self.command += [flag, value]
        self.env = dict(os.environ) | dict(env or {})
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._output: deque[str] = deque(maxlen=200)
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT: the WECHAT_API_BASE for the backend under test."""
        if self._base_url is None:
            raise EmulatorError("the emulator is not running: call start() first")
        return self._base_url

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.base_url)

    @property
    def output(self) -> str:
        """The process's last lines of output (for a failing test's message)."""
        return "".join(self._output)

    def start(self) -> Self:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
        )
        self._process = process
        announced: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read_output, args=(process, announced), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            url = announced.get(timeout=self.startup_timeout)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            raise EmulatorError(f"the emulator did not start:\n{self.output}")
        self._base_url = url
        control = self.control
        while not control.health():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"the emulator did not become healthy:\n{self.output}")
            time.sleep(0.05)
        return self

    def _read_output(
        self, process: subprocess.Popen[str], announced: queue.Queue[str | None]
    ) -> None:
        """Keep the pipe drained (a full pipe would block the server) and spot the URL line."""
        assert process.stdout is not None
        waiting = True
        for line in process.stdout:
            self._output.append(line)
            match = _LISTENING.search(line) if waiting else None
            if match:
                announced.put(match.group(1))
                waiting = False
        if waiting:
            announced.put(None)

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        process, self._process, self._base_url = self._process, None, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A merchant's notify_url on loopback: records each notification's headers and raw body,
    and answers `statuses` in turn, then `default`."""

    statuses: list[int] = field(default_factory=list)
    default: int = 204
    received: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.received.append(Received(headers, body))
            return self.statuses.pop(0) if self.statuses else self.default

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notifications, got {len(self.received)}")


@contextmanager
def notify_receiver(statuses: list[int] | None = None, default: int = 204) -> Iterator[Receiver]:
    """A Receiver serving on a free loopback port while the block runs (`receiver.url`)."""
    receiver = Receiver(statuses=list(statuses or []), default=default)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/pay/notify"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
