"""WeChat Pay's side of payments: the notification endpoint.

WeChat is the caller here, so the answers are WeChat's, not our envelope: 204 when the
notification is applied (or was already), 4xx `{"code": "FAIL", "message"}` when it is refused
(nothing changes; WeChat gives up after its retries), 5xx when we could not apply it (the
database is down, ...), which makes WeChat send it again on its retry schedule.
"""

from __future__ import annotations

import logging

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from minishop import extensions
from minishop.api.openapi_doc import OWN_ERROR_FORMAT
from minishop.domain import payments
from minishop.domain.payment_context import RefusedNotificationError
from minishop.errors import DEPENDENCY_ERRORS, AppError

bp = APIBlueprint(
    "payments", __name__, url_prefix="/api/v1/payments", abp_tags=[Tag(name="payments")]
)
log = logging.getLogger(__name__)


class WeChatAnswer(BaseModel):
    """WeChat Pay's documented failure answer from a merchant's notify_url."""

    code: str
    message: str


def _wechat_answer(status: int, message: str) -> Response:
    response = jsonify({"code": "FAIL", "message": message})
    response.status_code = status
    return response


@bp.post(
    "/wechat/notify",
    responses={
        204: None,
        400: WeChatAnswer,
        401: WeChatAnswer,
        404: WeChatAnswer,
        500: WeChatAnswer,
        503: WeChatAnswer,
    },
    description="Called by WeChat Pay; verified by WeChat's signature over the raw body.",
    openapi_extensions={OWN_ERROR_FORMAT: "WeChat Pay"},
)
def wechat_notify() -> Response:
    try:
        payments.handle_notification(
            extensions.session(),
            extensions.payment_context(),
            dict(request.headers),
            request.get_data(),
        )
    except RefusedNotificationError as refused:
        return _wechat_answer(refused.http_status, refused.message)
    except DEPENDENCY_ERRORS as exc:
        extensions.session().rollback()
        log.warning("payment notification not applied, WeChat will retry: %s", type(exc).__name__)
        return _wechat_answer(503, "temporarily unavailable, retry later")
    except AppError as exc:
        # Ours to fix (a race lost, WeChat Pay unconfigured): WeChat sends it again later.
        log.error("payment notification not applied, WeChat will retry: %s", exc.message)
        return _wechat_answer(max(exc.code.http_status, 500), "not applied, retry later")
    return Response(status=204)
