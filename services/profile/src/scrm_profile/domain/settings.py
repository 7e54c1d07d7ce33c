"""Per-tenant profile settings: stage thresholds, tiers, CLV horizon, phone region."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scrm_profile.domain.lifecycle import StageThresholds


class ProfileSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_country: str = Field(default="CN", min_length=2, max_length=2, description="Region for bare phones")
    silent_days: int = Field(default=30, ge=1, le=3650)
    sleeping_days: int = Field(default=90, ge=1, le=3650)
    churned_days: int = Field(default=180, ge=1, le=3650)
    rhythm_scaling: bool = Field(default=False, description="Stretch thresholds for customers who buy slowly")
    tier_mode: Literal["b2c", "b2b"] = "b2c"
    high_value_percent: float = Field(default=20, ge=1, le=50, description="Top N% by predicted CLV are 'dt'")
    ka_revenue_share: float = Field(default=0.5, gt=0, lt=1, description="B2B: accounts making this revenue share")
    growth_revenue_share: float = Field(default=0.3, gt=0, lt=1, description="B2B: the next share")
    clv_horizon_days: int = Field(default=365, ge=7, le=3650)
    clv_discount_rate: float = Field(default=0.10, ge=0, le=1, description="Yearly discount rate")

    @model_validator(mode="after")
    def _ordered(self) -> "ProfileSettings":
        if not self.silent_days < self.sleeping_days < self.churned_days:
            raise ValueError("silent_days < sleeping_days < churned_days must hold")
        if self.ka_revenue_share + self.growth_revenue_share >= 1:
            raise ValueError("ka_revenue_share + growth_revenue_share must be below 1")
        return self

    @property
    def thresholds(self) -> StageThresholds:
        return StageThresholds(self.silent_days, self.sleeping_days, self.churned_days, self.rhythm_scaling)
