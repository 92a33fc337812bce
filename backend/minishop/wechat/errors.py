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
