"""WeChat official account messages: which kind a touch may use, and one-time subscribe consents (一次性订阅).

Template messages are for service notices only; WeChat forbids marketing in them. A marketing touch on
``wechat_oa`` therefore needs a subscribe message, and every subscribe message spends one consent the customer
gave for that WeChat template (``accept`` in the official account's prompt adds one; ``reject`` or ``ban``
clears them; WeChat's 43101 says none is left). Each verdict is a channel skip with its reason, so a touch with
other channels falls back to the next one::

    kind        priority        grants   verdict on wechat_oa
    template    transactional   -        may send
    template    marketing       -        skipped: template_message_not_for_marketing
    subscribe   any             >= 1     may send, holding one grant until the send settles
    subscribe   any             0        skipped: no_subscribe_consent
"""

from collections.abc import Mapping
from typing import Any

from scrm_notify.domain.templates import TemplateSource

CHANNEL = "wechat_oa"
ACCEPT = "accept"
WITHDRAW = ("reject", "ban")


def wechat_template_of(source: TemplateSource, settings: Mapping[str, Any]) -> str | None:
    """The WeChat template a message uses: the shop's template names it, else the channel's default."""
    named = source.provider_template or settings.get("template_id")
    return str(named) if named else None


def channel_block(
    source: TemplateSource | None, priority: str, wechat_template: str | None, available: int
) -> str | None:
    """Why ``wechat_oa`` may not carry this touch (None when it may); ``available``: unspent, unheld grants."""
    if source is None:
        return None  # no template: the touch fails as ``template_missing`` when it is claimed
    if source.kind == "subscribe":
        if available < 1:
            return f"no_subscribe_consent (no one-time subscribe consent for WeChat template {wechat_template})"
        return None
    if priority == "marketing":
        return (
            "template_message_not_for_marketing (WeChat template messages are for service notices only; "
            "give the template kind subscribe for marketing)"
        )
    return None
