from scrm_ingest.domain.rate_limit import TenantRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_sustained_rate_holds() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(default_rate=10, burst_seconds=2, clock=clock)
    assert [limiter.take("t1", 1) for _ in range(20)] == [0.0] * 20  # a 2-second burst
    wait = limiter.take("t1", 1)
    assert 0.09 < wait <= 0.1  # one more event needs a tenth of a second at 10/s
    clock.now += 0.5
    assert [limiter.take("t1", 1) for _ in range(5)] == [0.0] * 5
    assert limiter.take("t1", 1) > 0


def test_tenants_have_their_own_buckets_and_limits() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(default_rate=5, burst_seconds=1, clock=clock)
    assert limiter.take("t1", 5) == 0.0
    assert limiter.take("t1", 1) > 0
    assert limiter.take("t2", 5) == 0.0, "another tenant is not slowed by the first"
    assert limiter.take("t3", 100, rate=100) == 0.0, "a tenant's own higher limit"


def test_a_batch_larger_than_the_bucket_passes_when_full_and_leaves_debt() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(default_rate=10, burst_seconds=1, clock=clock)
    assert limiter.take("t1", 50) == 0.0
    wait = limiter.take("t1", 1)
    assert 4.0 < wait <= 4.1  # 40 tokens of debt plus one, at 10/s
    clock.now += 4.1
    assert limiter.take("t1", 1) == 0.0
