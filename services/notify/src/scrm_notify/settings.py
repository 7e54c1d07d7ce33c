from pydantic import BaseModel, Field, model_validator

from scrm_kit.settings import ServiceSettings


class ProviderUrls(BaseModel):
    """Base URLs of the channel providers (tests point them at local fakes)."""

    wecom: str = "https://qyapi.weixin.qq.com/cgi-bin"
    wechat: str = "https://api.weixin.qq.com/cgi-bin"
    aliyun_sms: str = "https://dysmsapi.aliyuncs.com/"
    tencent_sms: str = "https://sms.tencentcloudapi.com/"
    sendgrid: str = "https://api.sendgrid.com"


class DeliverySettings(BaseModel):
    max_attempts: int = Field(default=6, ge=1, description="Sends tried before a touch is failed and dead-lettered")
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 600.0
    send_lease_seconds: float = 60.0
    circuit_threshold: int = 5
    circuit_cooldown_seconds: float = 30.0
    rate_per_second: dict[str, float] = Field(
        default_factory=lambda: {
            "webhook": 5000.0,
            "wecom": 150.0,
            "wechat_oa": 100.0,
            "sms_aliyun": 50.0,
            "sms_tencent": 50.0,
            "email_sendgrid": 100.0,
            "email_smtp": 20.0,
        },
        description="Token-bucket rate per provider and replica",
    )
    concurrency: int = Field(default=16, ge=1, description="Customers sent to at once per batch (and HTTP connections)")
    claim_batch: int = Field(
        default=32,
        ge=1,
        description="Touches recorded, gated and claimed in one transaction, sent, then settled in one; "
        "also the most touches a crash can leave claimed and unsettled",
    )
    task_ttl_hours: float = 72.0
    http_timeout_seconds: float = 10.0

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> "DeliverySettings":
        # A claim whose lease ran out is taken over; a send still in flight then would be repeated.
        if self.send_lease_seconds < 2 * self.http_timeout_seconds:
            raise ValueError("send_lease_seconds must be at least twice http_timeout_seconds")
        return self


class WeComSettings(BaseModel):
    """WeCom's second phase (reading mass-message results back) and the welcome-message fast path."""

    result_poll_seconds: list[float] = Field(
        default_factory=lambda: [60.0, 300.0, 1800.0, 3600.0],
        min_length=1,
        description="Delay before each read of a mass message's results; the last one repeats",
    )
    result_give_up_hours: float = Field(
        default=72.0, gt=0, description="A recipient still 'not sent' this long after the task was created is failed"
    )
    result_page_size: int = Field(default=500, ge=1, le=1000, description="limit of each paged results read")
    result_poll_batch: int = Field(default=100, ge=1, description="Touches claimed per poll")
    result_lease_seconds: float = Field(default=120.0, gt=0, description="How long a claimed poll is ours")
    result_poll_interval_seconds: float = Field(default=5.0, gt=0, description="How often the poller looks")
    welcome_group: str = Field(default="notify-welcome", description="Consumer group reading events.v1 for welcomes")
    welcome_template_id: str = Field(default="wecom_welcome", description="Template id of the welcome message")
    welcome_window_seconds: float = Field(default=20.0, gt=0, description="How long a WelcomeCode is valid")
    welcome_concurrency: int = Field(
        default=8,
        ge=1,
        description="Welcome messages sent at once per replica (each holds a pooled connection briefly)",
    )


class Settings(ServiceSettings):
    """Notify service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "notify"
    directory_group: str = "notify-profile"
    requests_topic: str = "touches.requests.v1"
    webhook_timeout_seconds: float = 5.0
    scheduler_interval_seconds: float = 1.0
    providers: ProviderUrls = Field(default_factory=ProviderUrls)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    wecom: WeComSettings = Field(default_factory=WeComSettings)
