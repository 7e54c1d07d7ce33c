"""Request and response bodies of the notify API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scrm_notify.domain.policy import Channel


class WebhookConfigIn(BaseModel):
    url: str = Field(description="Where touches are POSTed")
    secret: str | None = Field(default=None, description="HMAC signing secret; generated when omitted")


class WebhookConfigOut(BaseModel):
    channel: str
    url: str
    secret: str = Field(description="Whole only when notify generated it (shown once); masked otherwise")


class ChannelConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: dict[str, str | int | bool] = Field(default_factory=dict)
    secret: str | None = Field(default=None, description="Provider secret; omitted keeps the stored one")


class ChannelConfigOut(BaseModel):
    channel: str
    url: str | None
    settings: dict[str, Any]
    secret: str = Field(description="Masked: never echoed back whole")
    updated_at: datetime


class ChannelList(BaseModel):
    items: list[ChannelConfigOut]


class TouchOut(BaseModel):
    touch_key: str
    customer_id: str
    journey_id: str | None
    channel: str | None
    template_id: str
    priority: str
    status: str
    reason_code: str | None
    reason: str | None
    attempts: int
    provider_message_id: str | None
    due_at: datetime | None
    sent_at: datetime | None
    requested_at: datetime
    updated_at: datetime


class TouchPage(BaseModel):
    items: list[TouchOut]


class SubscribeGrantOut(BaseModel):
    """One-time subscribe consents for one WeChat template: ``unspent`` sends left, ``held`` of them set aside for
    touches being sent, ``last_status`` the customer's last answer (``accept``, ``reject``, ``ban``) or
    ``used_up`` when WeChat said none was left."""

    wechat_template_id: str
    unspent: int
    held: int
    last_status: str
    answered_at: datetime


class ConsentOut(BaseModel):
    channel: str
    status: str
    source: str
    updated_at: datetime | None
    reachable: bool
    subscribe_grants: list[SubscribeGrantOut] | None = Field(
        default=None, description="wechat_oa only: the customer's one-time subscribe consents per WeChat template"
    )


class ConsentList(BaseModel):
    customer_id: str
    items: list[ConsentOut]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["subscribed", "unsubscribed", "blocked"]
    source: str = Field(default="api", max_length=100)


class TaskOut(BaseModel):
    task_id: str
    touch_key: str
    customer_id: str
    journey_id: str | None
    staff_id: str
    title: str
    suggested_words: str | None
    status: str
    claimed_by: str | None
    outcome: str | None
    note: str | None
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TaskPage(BaseModel):
    items: list[TaskOut]


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    staff_id: str = Field(min_length=1, max_length=200)


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(min_length=1, max_length=100, description="e.g. reached, no_answer, visit_booked")
    note: str | None = Field(default=None, max_length=2000)


class StatRow(BaseModel):
    key: str
    status: str
    count: int


class TouchStats(BaseModel):
    by_channel: list[StatRow]
    by_reason: list[StatRow]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel | Literal["*"] = "*"
    locale: str = Field(default="default", min_length=1, max_length=20)
    body: str = Field(min_length=1, max_length=10_000)
    subject: str | None = Field(default=None, max_length=500)
    provider_template: str | None = Field(default=None, max_length=200)
    params: dict[str, str] = Field(default_factory=dict)
    kind: Literal["template", "subscribe"] = Field(
        default="template",
        description="On wechat_oa: a template message (service notices only) or a subscribe message (spends one "
        "of the customer's one-time consents for provider_template; required for marketing touches)",
    )
    page: str | None = Field(
        default=None, max_length=500, description="Where a subscribe message leads (rendered like the body)"
    )


class TemplateOut(TemplateIn):
    template_id: str
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateOut]


class TemplateNeed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(min_length=1, max_length=200)
    channel: Channel


class TemplateCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    needs: list[TemplateNeed] = Field(min_length=1, max_length=1000, description="(template id, channel) pairs")


class TemplateCoverageOut(TemplateNeed):
    defined: bool = Field(description="A touch renders for a customer in the default locale")
    source: Literal["tenant", "built_in"] | None = Field(description="The tenant's own template or notify's copy")
    locales: list[str] = Field(description="Locales of the tenant's own template on this channel (or *)")


class TemplateCheckOut(BaseModel):
    items: list[TemplateCoverageOut]


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(min_length=1)
    channel: Channel | Literal["*"] = "*"
    locale: str | None = None
    customer_id: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    draft: TemplateIn | None = Field(default=None, description="Preview an unsaved template instead")


class PreviewOut(BaseModel):
    text: str
    subject: str | None
    provider_template: str | None
    params: dict[str, str]
    kind: str = "template"
    page: str | None = None
