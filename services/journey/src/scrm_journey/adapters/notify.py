"""notify's template catalogue over HTTP: ``POST {SCRM_NOTIFY_URL}/v1/templates/check`` with the caller's token.

Why ask notify at validation time rather than keep a copy: notify owns templates (each tenant's own, in its
schema, which no other service reads; and the built-in copy, in its code), and services never import each
other. A copy fed over Kafka would lag (a template created a second ago would be reported missing) and would still
have to learn the built-ins; asking is exact, and definitions are checked at human pace, so one small request per
create, edit, publish or validate costs nothing. The caller's own ``Authorization: Bearer`` API token is
forwarded: notify reads the same ``tenancy`` schema, so it answers for exactly that tenant and journey holds no
credential of its own that could read another tenant's templates.

Errors enter our tree here: anything but a well-formed 200 is ``NotifyUnavailable`` naming notify and its URL.
"""

from collections.abc import Sequence

import httpx

from scrm_journey.domain.templates import NotifyUnavailable, TemplateCoverage

CHECK_PATH = "/v1/templates/check"


def build_client(base_url: str, timeout_seconds: float) -> httpx.AsyncClient:
    """One client per process, closed with the runtime."""
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_seconds)


class NotifyTemplates:
    """The tenant's template catalogue, asked of notify with the tenant's own ``Authorization`` header."""

    def __init__(self, client: httpx.AsyncClient, authorization: str) -> None:
        self._client = client
        self._authorization = authorization

    def _unavailable(self, why: str) -> NotifyUnavailable:
        return NotifyUnavailable(
            f"notify ({self._client.base_url}) {why}: template ids cannot be checked, so nothing was stored or "
            "published; retry when notify is back"
        )

    async def coverage(self, needs: Sequence[tuple[str, str]]) -> list[TemplateCoverage]:
        body = {"needs": [{"template_id": t, "channel": c} for t, c in needs]}
        try:
            response = await self._client.post(CHECK_PATH, json=body, headers={"Authorization": self._authorization})
        except httpx.TimeoutException as exc:
            raise self._unavailable(f"did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise self._unavailable(f"is unreachable ({type(exc).__name__})") from exc
        if response.status_code in (401, 403):
            raise self._unavailable(
                f"refused the tenant's API token ({response.status_code}): journey and notify must share the "
                "tenancy database"
            )
        if response.status_code != 200:
            raise self._unavailable(f"answered {response.status_code}: {response.text[:200]}")
        try:
            items = response.json()["items"]
            found = {
                (i["template_id"], i["channel"]): TemplateCoverage(
                    i["template_id"], i["channel"], bool(i["defined"]), tuple(i.get("locales") or ())
                )
                for i in items
            }
            return [found[need] for need in needs]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unavailable(f"gave an answer journey cannot read ({type(exc).__name__})") from exc
