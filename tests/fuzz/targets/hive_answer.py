"""Hive's answers (task API, custom index, async acknowledgements): the HTTP answer mapped to a body
or an error of the tree, then the parser the second input byte picks. Documented errors: the
``ProviderError`` family (``ModerationError``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from consumer.checks.providers.hive_answers import (
    added_id,
    check_response,
    model_of,
    parse_classification,
    parse_csam,
    parse_matches,
    raise_task_error,
    removed_id,
    task_id_of_ack,
)
from consumer.checks.redaction import Redactor
from consumer.errors import ModerationError
from tests.fuzz.targets._answers import answer_of

__all__ = ["PARSERS", "test_one_input"]

_CHECK = "visual"
_REDACTOR = Redactor()


def _csam(body: Mapping[str, Any]) -> object:
    answer = parse_csam(body, check=_CHECK)
    return answer.result.matched, answer.classes, model_of(body, _CHECK)


PARSERS: tuple[Callable[[Mapping[str, Any]], object], ...] = (
    lambda body: (parse_classification(body, check=_CHECK), model_of(body, _CHECK)),
    _csam,
    lambda body: parse_matches(body, check=_CHECK),
    lambda body: added_id(body, _CHECK),
    lambda body: removed_id(body, _CHECK),
    lambda body: task_id_of_ack(body, _CHECK),
    lambda body: raise_task_error(body, _CHECK, redactor=_REDACTOR),
)


def test_one_input(data: bytes) -> None:
    parsed = answer_of(data)
    if parsed is None:
        return
    answer, selector = parsed
    parse = PARSERS[selector % len(PARSERS)]
    task_errors = selector // len(PARSERS) % 2 == 0
    try:
        body = check_response(answer, _CHECK, redactor=_REDACTOR, task_errors=task_errors)
        parse(body)
    except ModerationError:
        return
