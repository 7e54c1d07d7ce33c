"""Template ids a definition sends, and what to say when notify does not have them.

The catalogue itself lives in notify (each tenant's own templates, plus built-in default copy for every id the
playbooks use), so the check needs notify's answer: ``TemplateCatalogue`` is the port, ``adapters.notify`` the
HTTP implementation. Templates are per channel, so a touch that may fall back from WeCom to SMS needs its
template on both.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from scrm_journey.domain.definition import IssueCouponNode, JourneyDefinition, SendTouchNode, StaffTaskNode
from scrm_journey.domain.validation import Problem
from scrm_kit.errors import RetryableError


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """A node that may send ``template_id`` on ``channels``."""

    node_id: str
    template_id: str
    channels: tuple[str, ...]

    @property
    def field(self) -> str:
        return f"nodes.{self.node_id}.template_id"


@dataclass(frozen=True, slots=True)
class TemplateCoverage:
    """notify's answer for one (template id, channel): ``defined`` when a touch would render for a customer in the
    default locale; ``locales`` are the tenant's own locales of it there (a template only in ``en`` is not enough)."""

    template_id: str
    channel: str
    defined: bool
    locales: tuple[str, ...] = ()


class NotifyUnavailable(RetryableError):
    """notify could not say which templates exist (unreachable, timed out, or refused): nothing unchecked is stored
    or published (HTTP 503)."""

    code = "notify_unavailable"


class TemplateCatalogue(Protocol):
    """The tenant's template catalogue, as notify keeps it."""

    async def coverage(self, needs: Sequence[tuple[str, str]]) -> list[TemplateCoverage]:
        """One answer per (template id, channel); raises ``NotifyUnavailable`` when notify cannot answer."""
        ...


def template_uses(definition: JourneyDefinition) -> list[TemplateUse]:
    """Every node that sends a template, with the channels it may use (staff tasks go to the staff task queue)."""
    uses: list[TemplateUse] = []
    for node_id, node in definition.nodes.items():
        if isinstance(node, SendTouchNode | IssueCouponNode):
            uses.append(TemplateUse(node_id, node.template_id, tuple(dict.fromkeys(node.channels))))
        elif isinstance(node, StaffTaskNode):
            uses.append(TemplateUse(node_id, node.template_id, ("staff_task",)))
    return uses


def needs(uses: Sequence[TemplateUse]) -> list[tuple[str, str]]:
    """The distinct (template id, channel) pairs to ask notify about."""
    return list(dict.fromkeys((u.template_id, channel) for u in uses for channel in u.channels))


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def template_problems(uses: Sequence[TemplateUse], answers: Sequence[TemplateCoverage]) -> list[Problem]:
    """One problem per node whose template notify lacks on some channel the node may use."""
    by_need = {(a.template_id, a.channel): a for a in answers}
    problems: list[Problem] = []
    for use in uses:
        missing = [c for c in use.channels if not by_need[(use.template_id, c)].defined]
        if not missing:
            continue
        plural = "s" if len(missing) > 1 else ""
        message = f'template "{use.template_id}" is not defined in notify for channel{plural} {_listing(missing)}'
        other_locales = sorted({loc for c in missing for loc in by_need[(use.template_id, c)].locales})
        if other_locales:
            message += (
                f" in the default locale (only in {_listing(other_locales)}): customers in other locales would get "
                "nothing"
            )
        message += f" (create it with PUT /v1/templates/{use.template_id} on notify)"
        problems.append(Problem(use.field, message))
    return problems


def unchecked_problems(uses: Sequence[TemplateUse], reason: str) -> list[Problem]:
    """What validation reports per sending node when notify could not be asked."""
    return [Problem(u.field, f'template "{u.template_id}" not checked: {reason}') for u in uses]
