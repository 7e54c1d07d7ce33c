"""Message templates, rendered in a sandbox; a missing variable is an error, never a blank in a message.

A template is stored per (template_id, channel, locale). ``body`` is the text; ``subject`` is for e-mail;
``provider_template`` names the provider's approved template (SMS TemplateCode, WeChat template_id) and
``params`` maps each of its parameters to an expression rendered the same way.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
ANY_CHANNEL = "*"
DEFAULT_LOCALE = "default"


@dataclass(frozen=True, slots=True)
class TemplateSource:
    body: str
    subject: str | None = None
    provider_template: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    text: str
    subject: str | None = None
    provider_template: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


BUILT_IN_TEMPLATES: dict[str, TemplateSource] = {
    "welcome": TemplateSource(
        "Thank you for your first order! We are glad to have you with us. (customer {{ customer_id }})"
    ),
}


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
    )


def render(template_id: str, variables: Mapping[str, Any]) -> str:
    """Render a built-in template's body."""
    source = BUILT_IN_TEMPLATES.get(template_id)
    if source is None:
        raise TemplateFailure(f"unknown template {template_id!r}")
    return render_source(template_id, source, variables).text
