"""WeChat failures as typed exceptions, each already carrying its place in our error table."""

from __future__ import annotations

from minishop.errors import AppError, ErrorCode

SYSTEM_BUSY = -1
INVALID_CODE = 40029
CODE_USED = 40163
INVALID_TOKEN = 40001
TOKEN_EXPIRED = 42001
QUOTA_EXCEEDED = 45011
NO_SUBSCRIPTION = 43101

TOKEN_ERRCODES = frozenset({INVALID_TOKEN, TOKEN_EXPIRED})


class WeChatApiError(AppError):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, api: str, errcode: int, errmsg: str) -> None:
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
        if errcode in (INVALID_CODE, CODE_USED):
            super().__init__(ErrorCode.INVALID_PARAMS, f"invalid {_code_kind(api)} code")
        elif errcode == QUOTA_EXCEEDED:
            super().__init__(
                ErrorCode.RATE_LIMITED, "WeChat quota exceeded", headers={"Retry-After": "60"}
            )
        else:
            super().__init__(ErrorCode.WECHAT_ERROR, f"WeChat error {errcode} from {api}")


class WeChatUnavailableError(AppError):
    """WeChat did not answer within our time budget, or could not be reached at all."""

    def __init__(self, api: str) -> None:
        self.api = api
        super().__init__(ErrorCode.WECHAT_TIMEOUT, f"WeChat did not answer in time ({api})")


def _code_kind(api: str) -> str:
    return "phone" if api == "getuserphonenumber" else "login"


class WeChatPayError(AppError):
    """WeChat Pay answered with an error (`{"code", "message"}`), or an answer we cannot trust.

    `pay_code` is WeChat's code (ORDERPAID, ORDER_NOT_EXIST, PARAM_ERROR, ...), or ours for an
    answer that is not one: INVALID_RESPONSE_SIGNATURE (a 2xx answer whose signature does not
    verify), INVALID_RESPONSE (signed but not the expected JSON), UNEXPECTED_RESPONSE (a status
    without a WeChat Pay error body).
    """

    def __init__(self, api: str, http_status: int, pay_code: str, pay_message: str) -> None:
        self.api = api
        self.http_status = http_status
        self.pay_code = pay_code
        self.pay_message = pay_message
        super().__init__(ErrorCode.WECHAT_ERROR, f"WeChat Pay error {pay_code} from {api}")


class WeChatPayUnavailableError(AppError):
    """WeChat Pay did not answer within our time budget: the outcome of the call is unknown."""

    def __init__(self, api: str) -> None:
        self.api = api
        super().__init__(ErrorCode.WECHAT_TIMEOUT, f"WeChat Pay did not answer in time ({api})")


class PayNotificationError(Exception):
    """A notification we refuse; WeChat reads `{"code", "message"}` and sends it again later.

    401 SIGN_ERROR when the signature does not check out, 400 PARAM_ERROR when the body,
    its resource or its plaintext is malformed.
    """

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"{http_status} {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message
