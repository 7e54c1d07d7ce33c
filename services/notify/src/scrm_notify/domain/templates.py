"""Message templates, rendered in a sandbox; a missing variable is an error, never a blank in a message.

A template is stored per (template_id, channel, locale). ``body`` is the text; ``subject`` is for e-mail;
``provider_template`` names the provider's approved template (SMS TemplateCode, WeChat template_id) and
``params`` maps each of its parameters to an expression rendered the same way. On ``wechat_oa``, ``kind`` says
which message it is: ``template`` (a template message, service notices only) or ``subscribe`` (a subscribe
message, which spends one of the customer's one-time consents for that WeChat template); ``page`` is where a
subscribe message leads, rendered like the body.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from scrm_notify.domain.builtin_templates import COPY, SMS_OPT_OUT

MessageKind = Literal["template", "subscribe"]

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
ANY_CHANNEL = "*"
DEFAULT_LOCALE = "default"


@dataclass(frozen=True, slots=True)
class TemplateSource:
    body: str
    subject: str | None = None
    provider_template: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    kind: MessageKind = "template"
    page: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    text: str
    subject: str | None = None
    provider_template: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    kind: MessageKind = "template"
    page: str | None = None


class TemplateFailure(Exception):
    """The template is unknown or cannot be rendered with the variables given."""


def check_syntax(source: str, field_name: str) -> str | None:
    """A description of the syntax error in ``source``, or None when it parses."""
    try:
        _env.parse(source)
    except TemplateError as exc:
        return f"{field_name}: {exc}"
    return None


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Template:
    """Compiling is the costly part; a template's text is its own cache key."""
    return _env.from_string(source)


def _render_one(template_id: str, part: str, source: str, variables: Mapping[str, Any]) -> str:
    try:
        return _compiled(source).render(**variables)
    except TemplateError as exc:
        raise TemplateFailure(f"template {template_id!r} {part}: {exc}") from exc


def render_source(template_id: str, source: TemplateSource, variables: Mapping[str, Any]) -> RenderedMessage:
    """Render every part of a template; the first missing variable fails the whole message."""
    return RenderedMessage(
        text=_render_one(template_id, "body", source.body, variables),
        subject=_render_one(template_id, "subject", source.subject, variables) if source.subject else None,
        provider_template=source.provider_template,
        params={k: _render_one(template_id, f"params.{k}", v, variables) for k, v in source.params.items()},
        kind=source.kind,
        page=_render_one(template_id, "page", source.page, variables) if source.page else None,
    )


def _built_in_sources(copy: Mapping[str, tuple[str, str]]) -> dict[tuple[str, str], TemplateSource]:
    sources: dict[tuple[str, str], TemplateSource] = {}
    for locale, (subject, body) in copy.items():
        sources[(ANY_CHANNEL, locale)] = TemplateSource(body)
        sources[("email", locale)] = TemplateSource(body, subject=subject)
        separator = "" if locale == DEFAULT_LOCALE else " "
        sources[("sms", locale)] = TemplateSource(f"{body}{separator}{SMS_OPT_OUT[locale]}")
    return sources


# template id -> (channel, locale) -> source: the playbooks' default copy (see ``builtin_templates``).
BUILT_IN_TEMPLATES: dict[str, dict[tuple[str, str], TemplateSource]] = {
    template_id: _built_in_sources(copy) for template_id, copy in COPY.items()
}


def _locales(locale: str | None) -> list[str]:
    """``en-US`` -> ``en-US``, ``en``, ``default``; ``zh-CN`` (or none) falls to the Chinese default."""
    found = [loc for loc in (locale, locale.split("-", 1)[0] if locale else None) if loc]
    return [*dict.fromkeys([*found, DEFAULT_LOCALE])]


def built_in(template_id: str, channel: str = ANY_CHANNEL, locale: str | None = None) -> TemplateSource | None:
    """The default copy of a template id on a channel: requested locale before the default, then exact channel
    before any channel."""
    variants = BUILT_IN_TEMPLATES.get(template_id)
    if variants is None:
        return None
    for loc in _locales(locale):
        for ch in (channel, ANY_CHANNEL):
            source = variants.get((ch, loc))
            if source is not None:
                return source
    return None


def render(
    template_id: str, variables: Mapping[str, Any], channel: str = ANY_CHANNEL, locale: str | None = None
) -> str:
    """Render a built-in template's body."""
    source = built_in(template_id, channel, locale)
    if source is None:
        raise TemplateFailure(f"unknown template {template_id!r}")
    return render_source(template_id, source, variables).text
