"""Per-tenant contact policy: frequency caps, quiet hours and platform limits, with defaults that never harass."""

from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CHANNELS = ("wecom", "wechat_oa", "sms", "email", "webhook", "staff_task")
Channel = Literal["wecom", "wechat_oa", "sms", "email", "webhook", "staff_task"]


class Cap(BaseModel):
    """At most ``per_day`` marketing touches in any rolling 24 hours and ``per_week`` in any rolling 7 days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_day: int | None = Field(default=None, ge=0)
    per_week: int | None = Field(default=None, ge=0)

    def tightened(self, other: "Cap | None") -> "Cap":
        """The stricter of two caps, limit by limit."""
        if other is None:
            return self
        return Cap(per_day=_min(self.per_day, other.per_day), per_week=_min(self.per_week, other.per_week))


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class QuietHours(BaseModel):
    """Marketing touches wait while the customer's local clock is in [start, end); spans midnight when end < start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time = time(21, 0)
    end: time = time(9, 0)
    enabled: bool = True


class PlatformLimits(BaseModel):
    """WeCom mass messages (企业群发) per customer; the provider's answer (status 3) stays the authority."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wecom_mass_per_day: int = Field(default=1, ge=0)
    wecom_mass_per_month: int = Field(default=4, ge=0)
    wecom_over_quota_hold: Literal["day", "month"] = Field(
        default="month",
        description="After WeCom answers status 3 (over quota) for a customer, hold WeCom marketing to them until the "
        "next calendar day or month (platform clock) after the message was sent",
    )
    platform_timezone: str = "Asia/Shanghai"


def _default_channel_caps() -> "dict[Channel, Cap]":
    return {"sms": Cap(per_day=1, per_week=2)}


class TenantPolicy(BaseModel):
    """Everything the gates need from the tenant; every field has a safe default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    global_cap: Cap = Cap(per_day=2, per_week=5)
    channel_caps: dict[Channel, Cap] = Field(default_factory=lambda: _default_channel_caps())
    stage_caps: dict[str, Cap] = Field(
        default_factory=lambda: {
            "sleeping": Cap(per_day=1, per_week=1),
            "churned": Cap(per_day=1, per_week=1),
        },
        description="Stricter caps by lifecycle stage (active, silent, sleeping, churned, ...)",
    )
    high_value_tiers: list[str] = Field(default_factory=lambda: ["DT", "KA"])
    high_value_cap: Cap = Cap(per_day=1, per_week=2)
    quiet_hours: QuietHours = QuietHours()
    default_timezone: str = "Asia/Shanghai"
    platform: PlatformLimits = PlatformLimits()
    unknown_customer_grace_seconds: int = Field(default=120, ge=0, le=86_400)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _quiet_hours_not_empty(self) -> "TenantPolicy":
        if self.quiet_hours.enabled and self.quiet_hours.start == self.quiet_hours.end:
            raise ValueError("quiet_hours.start and quiet_hours.end must differ")
        return self

    def cap_for(self, lifecycle_stage: str | None, tier: str | None) -> Cap:
        """The customer's global cap: the tenant's, tightened by stage and by high-value tier."""
        cap = self.global_cap.tightened(self.stage_caps.get(lifecycle_stage or ""))
        if tier is not None and tier in self.high_value_tiers:
            cap = cap.tightened(self.high_value_cap)
        return cap
