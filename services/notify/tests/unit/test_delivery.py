import random
from datetime import UTC, datetime, timedelta

from scrm_notify.domain.delivery import CircuitBreaker, SendOutcome, TokenBucket, backoff

NOW = datetime(2031, 1, 1, tzinfo=UTC)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    delays = [(backoff(n, NOW, 2.0, 600.0, rng) - NOW).total_seconds() for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        full = min(600.0, 2.0 * 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert delays[-1] <= 600


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert abs(bucket.take(0.0) - 0.1) < 1e-9
    assert bucket.take(0.2) == 0


def test_circuit_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=timedelta(seconds=30))
    for _ in range(3):
        assert breaker.allows(NOW)
        breaker.record(SendOutcome("retryable", "503"), NOW)
    assert not breaker.allows(NOW + timedelta(seconds=29))
    assert breaker.allows(NOW + timedelta(seconds=30))  # one trial
    assert not breaker.allows(NOW + timedelta(seconds=30))
    breaker.record(SendOutcome("retryable", "503"), NOW + timedelta(seconds=30))
    assert not breaker.allows(NOW + timedelta(seconds=59))
    assert breaker.allows(NOW + timedelta(seconds=61))
    breaker.record(SendOutcome.ok(), NOW + timedelta(seconds=61))
    assert breaker.allows(NOW + timedelta(seconds=61)) and breaker.allows(NOW + timedelta(seconds=61))


def test_a_trial_that_never_reports_does_not_hold_the_circuit_open() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=timedelta(seconds=30))
    breaker.record(SendOutcome("retryable", "503"), NOW)
    assert breaker.allows(NOW + timedelta(seconds=30))  # the trial, never sent: the claim's lease ran short
    assert not breaker.allows(NOW + timedelta(seconds=59))
    assert breaker.allows(NOW + timedelta(seconds=60))  # another trial a cooldown later
    breaker.record(SendOutcome.ok(), NOW + timedelta(seconds=60))
    assert breaker.allows(NOW + timedelta(seconds=60)) and breaker.allows(NOW + timedelta(seconds=60))


def test_a_configuration_error_opens_the_circuit_at_once() -> None:
    breaker = CircuitBreaker(threshold=5)
    breaker.record(SendOutcome("config", "60020 IP not trusted"), NOW)
    assert not breaker.allows(NOW + timedelta(seconds=1))
