"""What the payment rules share: their dependencies (WeChat Pay, the catalog cache, the buyer's
subscribe message) and the refusal a notification gets when nothing may change."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from minishop.domain.catalog import CatalogCache
from minishop.errors import AppError
from minishop.models import Order
from minishop.wechat.miniprogram import MiniProgramClient, SubscribeOutcome
from minishop.wechat.pay import WeChatPayClient

log = logging.getLogger(__name__)

DESCRIPTION_MAX_CHARS = 127  # WeChat's limit on `description`


class RefusedNotificationError(Exception):
    """A notification we must answer with 4xx and without changing anything."""

    def __init__(self, reason: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason  # signature, malformed, mismatch, unknown (the metric's label)
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True)
class BuyerMessages:
    """The subscribe message a buyer gets when their payment succeeds ("" template: none)."""

    wechat: MiniProgramClient
    paid_template_id: str

    def payment_succeeded(self, openid: str, order: Order) -> None:
        if not self.paid_template_id:
            return
        data = {
            "character_string1": order.order_no,
            "amount2": f"{order.total_fen / 100:.2f}",
            "thing3": describe_order(order)[:20],
        }
        try:
            outcome = self.wechat.send_subscribe_message(
                openid, self.paid_template_id, data, page=f"pages/orders/detail?no={order.order_no}"
            )
        except AppError as exc:
            log.warning("payment message not sent: %s", exc.message)
            return
        if outcome is SubscribeOutcome.NO_SUBSCRIPTION:
            log.info("payment message not sent: the buyer has no subscription left")


@dataclass(frozen=True)
class PaymentContext:
    """What the payment rules need from outside: WeChat Pay, the catalog cache, messages."""

    pay: WeChatPayClient
    catalog: CatalogCache
    notify_url: str
    messages: BuyerMessages


def describe_order(order: Order) -> str:
    first = order.items[0].title if order.items else order.order_no
    more = f" 等{len(order.items)}件" if len(order.items) > 1 else ""
    return (first[: DESCRIPTION_MAX_CHARS - len(more)] + more).strip()
