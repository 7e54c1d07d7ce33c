"""Checking a definition completely: its shape and graph (pure, ``domain.validation``) and its template ids,
which only notify can confirm (``domain.templates``).

Where notify cannot answer, the two callers differ on purpose: storing or publishing a definition refuses
(``NotifyUnavailable``, HTTP 503: nothing unchecked is kept), while ``/validate`` still reports every problem it
could find and marks each sending node "not checked" so the answer is never a silent ``valid``.
"""

from typing import Any

from scrm_journey.domain.definition import JourneyDefinition
from scrm_journey.domain.templates import (
    NotifyUnavailable,
    TemplateCatalogue,
    needs,
    template_problems,
    template_uses,
    unchecked_problems,
)
from scrm_journey.domain.validation import DefinitionError, Problem, graph_problems, parse_model


async def missing_templates(definition: JourneyDefinition, catalogue: TemplateCatalogue) -> list[Problem]:
    """A problem per node whose template notify does not have for the tenant on a channel the node may use."""
    uses = template_uses(definition)
    if not uses:
        return []
    return template_problems(uses, await catalogue.coverage(needs(uses)))


async def checked_definition(document: Any, catalogue: TemplateCatalogue) -> JourneyDefinition:
    """The parsed definition, or DefinitionError with every graph and template problem; NotifyUnavailable when
    notify cannot answer and the graph is otherwise fine (graph problems are reported either way)."""
    definition = parse_model(document)
    problems = graph_problems(definition)
    try:
        problems += await missing_templates(definition, catalogue)
    except NotifyUnavailable:
        if not problems:
            raise
    if problems:
        raise DefinitionError(problems)
    return definition


async def validation_problems(document: Any, catalogue: TemplateCatalogue) -> list[Problem]:
    """Every problem of a document, for ``/validate``: templates notify could not check are problems too."""
    try:
        definition = parse_model(document)
    except DefinitionError as exc:
        return exc.problems
    problems = graph_problems(definition)
    try:
        problems += await missing_templates(definition, catalogue)
    except NotifyUnavailable as exc:
        problems += unchecked_problems(template_uses(definition), str(exc))
    return problems
