"""api.mch.weixin.qq.com: the WeChat Pay API v3 calls of a JSAPI (mini-program) shop.

Unlike the mini-program host, Pay v3 answers failures with an HTTP status and
`{"code", "message"}`, authenticates every call by the merchant's RSA signature and signs every
2xx answer with the platform key (paths, fields and formats: wechat-api.md, "WeChat Pay API v3").
Request and answer signatures use real time (the merchant's clock is real); order expiry,
success_time and refund times use the emulator's virtual clock.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import time
from typing import Any

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from . import paynotify
from .interception import endpoint
from .paycrypto import SIGNATURE_TYPE, aes_gcm_encrypt, verify
from .paynotify import signed_headers
from .protocol import WeChatError
from .state import PayData, PayOrder, PayRefund, State, current_state

bp = Blueprint("pay", __name__, url_prefix="/v3")

MAX_SKEW_SECONDS = 300
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
NONCE_MEMORY_SECONDS = 600
PREPAY_TTL_SECONDS = 7200  # a prepay_id is valid for two hours
OUT_NO = re.compile(r"[0-9A-Za-z_\-*]{6,32}")
OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-*@|]{1,64}")
NOTIFY_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
_AUTHORIZATION = re.compile(rf"{SIGNATURE_TYPE} (.+)")
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')
_AUTH_FIELDS = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}
CHINA = datetime.timezone(datetime.timedelta(hours=8))

TRADE_STATE_DESCS = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "转入退款",
    "PAYERROR": "支付失败，请重新下单支付",  # noqa: RUF001 (WeChat's text),
}
# What an errcode fault on a pay api means: the HTTP status, answered with its usual code.
STATUS_CODES = {
    400: "PARAM_ERROR",
    401: "SIGN_ERROR",
    403: "NO_AUTH",
    404: "ORDER_NOT_EXIST",
    429: "RATELIMIT_EXCEEDED",
    500: "SYSTEM_ERROR",
}


class PayError(Exception):
    """A Pay v3 failure: `status` with `{"code", "message"}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message


def param_error(message: str) -> PayError:
    return PayError(400, "PARAM_ERROR", message)


@bp.errorhandler(PayError)
def _render_error(error: PayError) -> ResponseReturnValue:
    return {"code": error.code, "message": error.message}, error.status


@bp.errorhandler(WeChatError)
def _render_fault(error: WeChatError) -> ResponseReturnValue:
    """An errcode fault: the errcode is taken as the HTTP status (429, 500, ...)."""
    status = error.errcode if 400 <= error.errcode <= 599 else 500
    code = STATUS_CODES.get(status, "SYSTEM_ERROR")
    return {"code": code, "message": error.errmsg or f"emulated {code}"}, status


def rfc3339(moment: float) -> str:
    """WeChat's time format: seconds, China time, explicit offset (2026-11-30T22:31:45+08:00)."""
    return datetime.datetime.fromtimestamp(int(moment), CHINA).isoformat()


@bp.after_request
def _sign_answer(response: Response) -> Response:
    response.headers["Request-ID"] = secrets.token_hex(16)
    if 200 <= response.status_code < 300:
        state = current_state()
        headers = signed_headers(state, response.get_data())
        with state.lock:
            probe = state.pay.signtest_answers > 0
            if probe:
                state.pay.signtest_answers -= 1
        if probe:  # WeChat's probe: a client that accepts it does not verify signatures
            headers["Wechatpay-Signature"] = SIGNTEST_PREFIX + headers["Wechatpay-Signature"]
        response.headers.update(headers)
    return response


def _path_with_query() -> str:
    """The request target exactly as sent (what the merchant signed)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = request.query_string.decode()
    return request.path + (f"?{query}" if query else "")


def authenticate(state: State) -> None:
    """Check the Authorization header: merchant, serial, signature, timestamp, fresh nonce."""
    match = _AUTHORIZATION.fullmatch(request.headers.get("Authorization", "").strip())
    if match is None:
        raise PayError(401, "SIGN_ERROR", f"Authorization missing or not {SIGNATURE_TYPE}")
    fields = dict(_AUTH_PARAM.findall(match.group(1)))
    missing = sorted(_AUTH_FIELDS - set(fields))
    if missing:
        raise PayError(401, "SIGN_ERROR", f"Authorization lacks {', '.join(missing)}")
    config = state.config.pay
    if fields["mchid"] != config.mchid:
        raise PayError(401, "SIGN_ERROR", "mchid in Authorization is not a known merchant")
    if fields["serial_no"].upper() != config.merchant_serial:
        raise PayError(401, "SIGN_ERROR", "serial_no is not the merchant certificate's serial")
    timestamp = fields["timestamp"]
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        raise PayError(401, "SIGN_ERROR", "timestamp is more than 5 minutes from now")
    message = (
        f"{request.method}\n{_path_with_query()}\n{timestamp}\n{fields['nonce_str']}\n".encode()
        + request.get_data(cache=True)
        + b"\n"
    )
    if not verify(state.pay_keys.merchant_public_key, message, fields["signature"]):
        raise PayError(401, "SIGN_ERROR", "signature verification failed")
    now = time.time()
    with state.lock:
        nonces = state.pay.nonces
        while nonces and next(iter(nonces.values())) + NONCE_MEMORY_SECONDS <= now:
            del nonces[next(iter(nonces))]
        if fields["nonce_str"] in nonces:
            raise PayError(401, "SIGN_ERROR", "nonce_str already used")
        nonces[fields["nonce_str"]] = now


def json_body() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(cache=True))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise param_error("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise param_error("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, maximum: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= maximum:
        raise param_error(f"{name} must be a string of 1 to {maximum} characters")
    return value


def _positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise param_error(f"{name} must be a positive integer (fen)")
    return value


def _currency(amount: dict[str, Any]) -> str:
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise param_error("amount.currency must be CNY")
    return "CNY"


def _check_mchid(state: State, mchid: object) -> None:
    if mchid is None or mchid == "":
        raise param_error("mchid is required")
    if mchid != state.config.pay.mchid:
        raise param_error("mchid does not match the merchant that signed the request")


def _expiry(time_expire: str | None) -> float | None:
    if time_expire is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(time_expire)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in time_expire:
        raise param_error("time_expire must be RFC 3339 with an offset (2026-06-08T10:34:56+08:00)")
    return moment.timestamp()


def _expired(order: PayOrder, now: float) -> bool:
    return order.expires_at is not None and now >= order.expires_at


def refresh_trade_state(order: PayOrder, now: float) -> None:
    """An unpaid order past its time_expire is closed (the caller holds the state lock)."""
    if order.trade_state in ("NOTPAY", "PAYERROR") and _expired(order, now):
        order.trade_state = "CLOSED"


def transaction_json(order: PayOrder) -> dict[str, Any]:
    """The query-order shape, also the plaintext of a TRANSACTION.SUCCESS notification."""
    answer: dict[str, Any] = {
        "appid": order.appid,
        "mchid": order.mchid,
        "out_trade_no": order.out_trade_no,
    }
    if order.transaction_id is not None:
        answer["transaction_id"] = order.transaction_id
    answer["trade_type"] = "JSAPI"
    answer["trade_state"] = order.trade_state
    answer["trade_state_desc"] = TRADE_STATE_DESCS[order.trade_state]
    if order.transaction_id is not None:
        answer["bank_type"] = "OTHERS"
    if order.attach is not None:
        answer["attach"] = order.attach
    if order.success_time is not None:
        answer["success_time"] = order.success_time
    answer["payer"] = {"openid": order.openid}
    amount: dict[str, Any] = {"total": order.total}
    if order.payer_total is not None:
        amount["payer_total"] = order.payer_total
    amount |= {"currency": order.currency, "payer_currency": order.currency}
    answer["amount"] = amount
    return answer


def _found(order: PayOrder | None) -> PayOrder:
    """`order`, or WeChat's 404 when the lookup found none."""
    if order is None:
        raise PayError(404, "ORDER_NOT_EXIST", "订单不存在")
    return order


def _order(pay: PayData, out_trade_no: str) -> PayOrder:
    return _found(pay.orders.get(out_trade_no))


@bp.post("/pay/transactions/jsapi")
@endpoint("pay_jsapi")
def jsapi() -> ResponseReturnValue:
    """Create (or re-request) a JSAPI order: `{"prepay_id"}`."""
    state = current_state()
    authenticate(state)
    body = json_body()
    if not body.get("appid"):
        raise param_error("appid is required")
    if body.get("appid") != state.config.appid:
        raise PayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    _check_mchid(state, body.get("mchid"))
    description = _text(body, "description", 127)
    out_trade_no = body.get("out_trade_no")
    if not isinstance(out_trade_no, str) or not OUT_NO.fullmatch(out_trade_no):
        raise param_error("out_trade_no must be 6 to 32 of [0-9A-Za-z_-*]")
    time_expire = _text(body, "time_expire", 64, required=False)
    expires_at = _expiry(time_expire)
    notify_url = _text(body, "notify_url", 256)
    if notify_url is None or not NOTIFY_URL.fullmatch(notify_url):
        raise param_error("notify_url must be an http:// or https:// URL")
    attach = _text(body, "attach", 128, required=False)
    amount, payer = body.get("amount"), body.get("payer")
    if not isinstance(amount, dict):
        raise param_error("amount is required")
    total = _positive_int(amount.get("total"), "amount.total")
    currency = _currency(amount)
    openid = payer.get("openid") if isinstance(payer, dict) else None
    if not isinstance(openid, str) or not openid:
        raise param_error("payer.openid is required")
    assert description is not None
    parameters = json.dumps(body, sort_keys=True, ensure_ascii=False)
    with state.lock:
        now = state.clock.now()
        order = state.pay.orders.get(out_trade_no)
        if order is not None:
            refresh_trade_state(order, now)
            if order.trade_state in ("SUCCESS", "REFUND"):
                raise PayError(400, "ORDERPAID", "该订单已支付")
            if order.trade_state == "CLOSED":
                raise PayError(400, "ORDER_CLOSED", "订单已关闭")
            if order.parameters != parameters:
                raise param_error("out_trade_no was already used with different parameters")
            if now >= order.prepay_expires_at:
                order.prepay_id = _new_prepay_id(now)
                order.prepay_expires_at = now + PREPAY_TTL_SECONDS
            return {"prepay_id": order.prepay_id}
        order = PayOrder(
            out_trade_no=out_trade_no,
            appid=state.config.appid,
            mchid=state.config.pay.mchid,
            description=description,
            notify_url=notify_url,
            total=total,
            currency=currency,
            openid=openid,
            attach=attach,
            time_expire=time_expire,
            expires_at=expires_at,
            parameters=parameters,
            prepay_id=_new_prepay_id(now),
            prepay_expires_at=now + PREPAY_TTL_SECONDS,
        )
        state.pay.orders[out_trade_no] = order
        return {"prepay_id": order.prepay_id}


def _new_prepay_id(now: float) -> str:
    """wx + 14-digit China time + random, 36 characters like WeChat's."""
    stamp = datetime.datetime.fromtimestamp(int(now), CHINA).strftime("%Y%m%d%H%M%S")
    return f"wx{stamp}{secrets.token_hex(10)}"


def _query_mchid(state: State) -> None:
    _check_mchid(state, request.args.get("mchid"))


@bp.get("/pay/transactions/out-trade-no/<out_trade_no>")
@endpoint("pay_query")
def query_by_out_trade_no(out_trade_no: str) -> ResponseReturnValue:
    state = current_state()
    authenticate(state)
    _query_mchid(state)
    with state.lock:
        order = _order(state.pay, out_trade_no)
        refresh_trade_state(order, state.clock.now())
        return transaction_json(order)


@bp.get("/pay/transactions/id/<transaction_id>")
@endpoint("pay_query")
def query_by_transaction_id(transaction_id: str) -> ResponseReturnValue:
    state = current_state()
    authenticate(state)
    _query_mchid(state)
    with state.lock:
        return transaction_json(_found(state.pay.order_by_transaction(transaction_id)))


@bp.post("/pay/transactions/out-trade-no/<out_trade_no>/close")
@endpoint("pay_close")
def close(out_trade_no: str) -> ResponseReturnValue:
    """Close an unpaid order: 204; a paid one is 400 ORDERPAID; closing twice is fine."""
    state = current_state()
    authenticate(state)
    _check_mchid(state, json_body().get("mchid"))
    with state.lock:
        order = _order(state.pay, out_trade_no)
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise PayError(400, "ORDERPAID", "该订单已支付")
        order.trade_state = "CLOSED"
    return Response(status=204)


def refund_json(refund: PayRefund, order: PayOrder) -> dict[str, Any]:
    """The refund answer (create and query)."""
    answer: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": refund.create_time,
        "status": refund.status,
        "funds_account": "AVAILABLE",
    }
    if refund.success_time is not None:
        answer["success_time"] = refund.success_time
    answer["amount"] = _refund_amount(refund, order)
    return answer


def _refund_amount(refund: PayRefund, order: PayOrder) -> dict[str, Any]:
    payer_total = order.total if order.payer_total is None else order.payer_total
    payer_refund = refund.refund * payer_total // order.total
    return {
        "total": refund.total,
        "refund": refund.refund,
        "payer_total": payer_total,
        "payer_refund": payer_refund,
        "settlement_total": order.total,
        "settlement_refund": refund.refund,
        "discount_refund": refund.refund - payer_refund,
        "currency": refund.currency,
    }


def refund_notification_json(refund: PayRefund, order: PayOrder) -> dict[str, Any]:
    """The plaintext of a REFUND.* notification (note `refund_status`, not `status`)."""
    answer: dict[str, Any] = {
        "mchid": order.mchid,
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
    }
    if refund.success_time is not None:
        answer["success_time"] = refund.success_time
    amount = _refund_amount(refund, order)
    answer["user_received_account"] = "支付用户零钱"
    answer["amount"] = {
        name: amount[name] for name in ("total", "refund", "payer_total", "payer_refund")
    }
    return answer


def _new_refund_id() -> str:
    return "50" + "".join(secrets.choice("0123456789") for _ in range(27))


def _refund_order(pay: PayData, body: dict[str, Any]) -> PayOrder:
    out_trade_no, transaction_id = body.get("out_trade_no"), body.get("transaction_id")
    if transaction_id is not None:
        if not isinstance(transaction_id, str):
            raise param_error("transaction_id must be a string")
        return _found(pay.order_by_transaction(transaction_id))
    if isinstance(out_trade_no, str):
        return _order(pay, out_trade_no)
    raise param_error("give out_trade_no or transaction_id")


@bp.post("/refund/domestic/refunds")
@endpoint("pay_refund")
def create_refund() -> ResponseReturnValue:
    """Refund part or all of a paid order; the same out_refund_no answers the same refund.

    The refund is answered PROCESSING, then reaches the control-set outcome at once (a query
    shows it) and its notification goes to the refund's notify_url, if one was given.
    """
    state = current_state()
    authenticate(state)
    body = json_body()
    out_refund_no = body.get("out_refund_no")
    if not isinstance(out_refund_no, str) or not OUT_REFUND_NO.fullmatch(out_refund_no):
        raise param_error("out_refund_no must be 1 to 64 of [0-9A-Za-z_-|*@]")
    reason = _text(body, "reason", 80, required=False)
    notify_url = _text(body, "notify_url", 256, required=False)
    if notify_url is not None and not NOTIFY_URL.fullmatch(notify_url):
        raise param_error("notify_url must be an http:// or https:// URL")
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise param_error("amount is required")
    refund_fen = _positive_int(amount.get("refund"), "amount.refund")
    total = _positive_int(amount.get("total"), "amount.total")
    currency = _currency(amount)
    parameters = json.dumps(body, sort_keys=True, ensure_ascii=False)
    with state.lock:
        order = _refund_order(state.pay, body)
        existing = state.pay.refunds.get(out_refund_no)
        if existing is not None:
            if existing.parameters != parameters:
                raise param_error("out_refund_no was already used with different parameters")
            return refund_json(existing, order)
        if order.trade_state not in ("SUCCESS", "REFUND") or order.transaction_id is None:
            raise param_error("the order is not paid")
        if total != order.total:
            raise param_error("amount.total does not match the order's total")
        if refund_fen > order.total - order.refunded:
            raise param_error("amount.refund exceeds what is left to refund on the order")
        now = state.clock.now()
        refund = PayRefund(
            refund_id=_new_refund_id(),
            out_refund_no=out_refund_no,
            out_trade_no=order.out_trade_no,
            transaction_id=order.transaction_id,
            refund=refund_fen,
            total=total,
            currency=currency,
            reason=reason,
            notify_url=notify_url,
            parameters=parameters,
            create_time=rfc3339(now),
        )
        state.pay.refunds[out_refund_no] = refund
        order.refunded += refund_fen
        answer = refund_json(refund, order)
        notification = _settle_refund(state, refund, order, state.pay.refund_outcome, now)
    if notification is not None:
        paynotify.send(state, notification)
    return answer


def _settle_refund(
    state: State, refund: PayRefund, order: PayOrder, outcome: str, now: float
) -> paynotify.Notification | None:
    """Move a PROCESSING refund to `outcome`; the notification to send, if any (lock held)."""
    if outcome == "PROCESSING":
        return None
    refund.status = outcome
    if outcome == "SUCCESS":
        refund.success_time = rfc3339(now)
        settled = sum(
            r.refund
            for r in state.pay.refunds.values()
            if r.out_trade_no == order.out_trade_no and r.status == "SUCCESS"
        )
        if settled >= order.total:
            order.trade_state = "REFUND"
    elif outcome == "CLOSED":
        order.refunded -= refund.refund
    if refund.notify_url is None:
        return None
    summaries = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
    return paynotify.build(
        state,
        refund.notify_url,
        f"REFUND.{outcome}",
        summaries[outcome],
        "refund",
        refund_notification_json(refund, order),
        rfc3339(now),
    )


@bp.get("/refund/domestic/refunds/<out_refund_no>")
@endpoint("pay_refund_query")
def query_refund(out_refund_no: str) -> ResponseReturnValue:
    state = current_state()
    authenticate(state)
    with state.lock:
        refund = state.pay.refunds.get(out_refund_no)
        if refund is None:
            raise PayError(404, "ORDER_NOT_EXIST", "退款单不存在")
        return refund_json(refund, state.pay.orders[refund.out_trade_no])


@bp.get("/certificates")
@endpoint("pay_certificates")
def certificates() -> ResponseReturnValue:
    """The platform certificate (certificate mode), its PEM AES-GCM encrypted with the APIv3 key."""
    state = current_state()
    authenticate(state)
    certificate = state.pay_keys.certificate
    nonce = secrets.token_hex(6)
    return {
        "data": [
            {
                "serial_no": state.config.pay.platform_serial,
                "effective_time": rfc3339(certificate.not_valid_before_utc.timestamp()),
                "expire_time": rfc3339(certificate.not_valid_after_utc.timestamp()),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": aes_gcm_encrypt(
                        state.config.pay.apiv3_key,
                        nonce,
                        "certificate",
                        state.pay_keys.certificate_pem.encode(),
                    ),
                },
            }
        ]
    }
