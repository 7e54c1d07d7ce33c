"""The error tree every service raises into and every consumer sorts out.

    ScrmError
    ├── RetryableError      a dependency is briefly unavailable: retry with backoff, then dead-letter
    │   └── RateLimited     the caller sent too much: retry after ``retry_after`` seconds (HTTP 429)
    └── PermanentError      the input can never succeed: dead-letter at once with the reason
        ├── InvalidInput    a field is wrong; carries the field path for the API error body
        └── NotFound        the thing asked for does not exist for this tenant

Adapters translate library exceptions (asyncpg, aiokafka, httpx) into this tree where they enter our code.
"""


class ScrmError(Exception):
    """Base of every error we raise on purpose. ``http_status`` overrides the status its branch maps to."""

    code = "error"
    http_status: int | None = None


class RetryableError(ScrmError):
    """Worth trying again later: a timeout, a broker or database briefly unreachable, a 5xx."""

    code = "unavailable"


class RateLimited(RetryableError):
    """Too many requests for the caller's limit; ``retry_after`` seconds until it may try again."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ScrmError):
    """Will fail the same way every time: bad input, unknown reference, a rule that forbids it."""

    code = "invalid"


class InvalidInput(PermanentError):
    """A field of the input is wrong."""

    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(PermanentError):
    """The thing asked for does not exist for this tenant."""

    code = "not_found"
