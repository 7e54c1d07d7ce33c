"""Message templates, rendered in a sandbox; a missing variable is an error, never a blank in a message."""

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

BUILT_IN_TEMPLATES: dict[str, str] = {
    "welcome": "Thank you for your first order! We are glad to have you with us. (customer {{ customer_id }})",
}


class TemplateFailure(Exception):
    """The template is unknown or cannot be rendered with the variables given."""


def render(template_id: str, variables: Mapping[str, Any]) -> str:
    source = BUILT_IN_TEMPLATES.get(template_id)
    if source is None:
        raise TemplateFailure(f"unknown template {template_id!r}")
    try:
        return _env.from_string(source).render(**variables)
    except TemplateError as exc:
        raise TemplateFailure(f"template {template_id!r}: {exc}") from exc
