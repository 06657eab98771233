"""Huawei ImageSearch's answers: the HTTP answer mapped to a body or an error of the tree, then the
search or exists parser (the second input byte picks). Documented errors: the ``ProviderError``
family (``ModerationError``)."""

from __future__ import annotations

from consumer.checks.providers.huawei import check_huawei_response, parse_exists, parse_search
from consumer.checks.redaction import Redactor
from consumer.errors import ModerationError
from tests.fuzz.targets._answers import answer_of

__all__ = ["test_one_input"]

_CHECK = "similarity"
_REDACTOR = Redactor()


def test_one_input(data: bytes) -> None:
    parsed = answer_of(data)
    if parsed is None:
        return
    answer, selector = parsed
    try:
        body = check_huawei_response(answer, _CHECK, redactor=_REDACTOR)
        if selector % 3 == 0:
            parse_search(body, _CHECK)
        elif selector % 3 == 1:
            parse_exists(body, _CHECK)
    except ModerationError:
        return
