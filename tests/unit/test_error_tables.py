"""The vendors' answer → error tables: every listed HTTP status and vendor code maps to the class the
vendor's documents give it (written out here, apart from the tables, so changing a class or adding
an entry fails a test), unknown statuses follow the default rule, rate limits carry Retry-After, and
no message carries a registered secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from consumer.checks.providers import answers, hive_answers, huawei
from consumer.checks.providers.answers import HTTP_STATUSES, MAX_NOTE, ErrorTable, Outcome, Rule
from consumer.checks.providers.hive_answers import HIVE_ERRORS
from consumer.checks.providers.huawei import HUAWEI_ERRORS
from consumer.checks.redaction import Redactor
from consumer.errors import PermanentError, ProviderError, RateLimitedError, TransientError

SECRET = "error-table-secret-5f1d9c"  # a configured key, echoed back by a provider
REDACTOR = Redactor([SECRET])


# the mappers, with this test's redactor
def error_for(table: ErrorTable, check: str, **answer: Any) -> TransientError | PermanentError | None:
    return answers.error_for(table, check, redactor=REDACTOR, **answer)


def check_response(resp: httpx.Response, check: str) -> dict[str, Any]:
    return hive_answers.check_response(resp, check, redactor=REDACTOR)


def raise_task_error(body: dict[str, Any], check: str) -> None:
    hive_answers.raise_task_error(body, check, redactor=REDACTOR)


def check_huawei_response(resp: httpx.Response, check: str) -> dict[str, Any]:
    return huawei.check_huawei_response(resp, check, redactor=REDACTOR)


OK = None  # the answer is a success: no error

# What the documents say (../shared/DESIGN.md section 2, the seeds, Huawei's error code table).
HIVE_STATUSES: dict[int, type[ProviderError] | None] = {
    200: OK,
    400: PermanentError,
    401: PermanentError,
    403: PermanentError,
    404: PermanentError,
    405: PermanentError,
    408: TransientError,
    413: PermanentError,
    415: PermanentError,
    422: PermanentError,
    425: TransientError,
    429: RateLimitedError,
    500: TransientError,
    502: TransientError,
    503: TransientError,
    504: TransientError,
}
HIVE_CODES: dict[str, type[ProviderError] | None] = {
    "0": OK,
    "200": OK,
    "2001": TransientError,
    "2002": TransientError,
    "2003": TransientError,
    "2004": TransientError,
    "3001": PermanentError,
    "3002": PermanentError,
    "3003": PermanentError,
}
HIVE_FAMILIES: dict[str, type[ProviderError] | None] = {
    "2": TransientError,
    "2999": TransientError,
    "20": TransientError,
    "3": PermanentError,
    "3999": PermanentError,
    "1": PermanentError,
    "4001": PermanentError,
    "999999": PermanentError,
}
HUAWEI_STATUSES: dict[int, type[ProviderError] | None] = {
    200: OK,
    400: PermanentError,
    401: PermanentError,
    403: PermanentError,
    404: PermanentError,
    408: TransientError,
    413: PermanentError,
    415: PermanentError,
    422: PermanentError,
    425: TransientError,
    429: RateLimitedError,
    500: TransientError,
    502: TransientError,
    503: TransientError,
    504: TransientError,
}
HUAWEI_CODES: dict[str, type[ProviderError] | None] = {
    "IS.0001": PermanentError,
    "IS.0002": PermanentError,
    "IS.0003": PermanentError,
    "IS.0004": PermanentError,
    "IS.0005": PermanentError,
    "IS.0006": PermanentError,
    "IS.0007": PermanentError,
    "IS.0008": PermanentError,
    "IS.0009": TransientError,
    "IS.0010": PermanentError,
    "IS.0011": PermanentError,
    "IS.0012": TransientError,
    "IS.0013": PermanentError,
    "IS.0014": PermanentError,
    "IS.0015": PermanentError,
    "IS.0016": PermanentError,
    "APIGW.0301": PermanentError,
    "APIGW.0308": TransientError,
}
UNKNOWN_5XX = [501, 505, 507, 520, 599, 700]
UNKNOWN_OTHERS = [99, 201, 202, 204, 301, 302, 409, 410, 418, 451, 499]
TABLES = {"hive": HIVE_ERRORS, "huawei": HUAWEI_ERRORS}


def class_of(error: ProviderError | None) -> type[ProviderError] | None:
    return None if error is None else type(error)


def status_classes(table: ErrorTable) -> dict[int, type[ProviderError] | None]:
    return {s: class_of(error_for(table, "c", status=s, message="m")) for s in table.listed_statuses}


def code_classes(table: ErrorTable) -> dict[str, type[ProviderError] | None]:
    return {c: class_of(error_for(table, "c", code=c, message="m")) for c in table.codes}


def hive_answer(status: int, **headers: str) -> httpx.Response:
    message = f"answer {status}: you sent authorization: token {SECRET} ({SECRET})"
    return httpx.Response(status, json={"return_code": status, "message": message}, headers=headers)


def hive_task(code: str) -> dict[str, Any]:
    message = f"task {code} failed; key {SECRET}"
    return {"status": [{"status": {"code": code, "message": message}, "response": {"output": []}}]}


def huawei_answer(status: int, code: str | None = None, **headers: str) -> httpx.Response:
    body: dict[str, Any] = {"error_msg": f"token {SECRET} invalid, X-Auth-Token: {SECRET}"}
    if code is not None:
        body["error_code"] = code
    return httpx.Response(status, json=body, headers=headers)


def raised(call: Any, *args: Any) -> ProviderError | None:
    try:
        call(*args)
    except ProviderError as exc:
        return exc
    return None


# --- each table says what the documents say ---------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "statuses", "codes"),
    [(HIVE_ERRORS, HIVE_STATUSES, HIVE_CODES), (HUAWEI_ERRORS, HUAWEI_STATUSES, HUAWEI_CODES)],
    ids=["hive", "huawei"],
)
def test_every_listed_entry_maps_to_its_documented_class(
    table: ErrorTable,
    statuses: Mapping[int, type[ProviderError] | None],
    codes: Mapping[str, type[ProviderError] | None],
) -> None:
    assert status_classes(table) == statuses  # an added, removed or reclassified entry fails here
    assert code_classes(table) == codes


@pytest.mark.parametrize(("status", "rule"), sorted(HIVE_ERRORS.listed_statuses.items()))
def test_hive_statuses_through_the_mapper(status: int, rule: Rule) -> None:
    error = raised(check_response, hive_answer(status), "visual")
    assert class_of(error) is HIVE_STATUSES[status]
    if error is not None:
        assert (error.check, error.status, error.code) == ("visual", status, None)
        assert str(error).startswith(f"visual: Hive HTTP {status}: answer {status}")
        assert str(error).endswith(f"({rule.note})")
        assert SECRET not in str(error)


@pytest.mark.parametrize(("code", "rule"), sorted(HIVE_ERRORS.codes.items()))
def test_hive_task_codes_through_the_mapper(code: str, rule: Rule) -> None:
    for error in (
        raised(raise_task_error, hive_task(code), "visual"),
        raised(check_response, httpx.Response(200, json=hive_task(code)), "visual"),
    ):
        assert class_of(error) is HIVE_CODES[code]
        if error is not None:
            assert (error.check, error.status, error.code) == ("visual", None, code)
            assert str(error).startswith(f"visual: Hive task error {code}: task {code} failed")
            assert str(error).endswith(f"({rule.note})")
            assert SECRET not in str(error)


@pytest.mark.parametrize(("code", "expected"), sorted(HIVE_FAMILIES.items()))
def test_unlisted_hive_task_codes_follow_their_family(code: str, expected: type[ProviderError]) -> None:
    assert code not in HIVE_ERRORS.codes
    error = raised(raise_task_error, hive_task(code), "csam")
    assert class_of(error) is expected
    assert error is not None and error.code == code


@pytest.mark.parametrize(("status", "rule"), sorted(HUAWEI_ERRORS.listed_statuses.items()))
def test_huawei_statuses_through_the_mapper(status: int, rule: Rule) -> None:
    answer = huawei_answer(status) if status != 200 else httpx.Response(200, json={"result": []})
    error = raised(check_huawei_response, answer, "similarity")
    assert class_of(error) is HUAWEI_STATUSES[status]
    if error is not None:
        assert (error.check, error.status, error.code) == ("similarity", status, None)
        assert str(error).endswith(f"({rule.note})") and SECRET not in str(error)


@pytest.mark.parametrize(("code", "rule"), sorted(HUAWEI_ERRORS.codes.items()))
def test_huawei_codes_through_the_mapper(code: str, rule: Rule) -> None:
    error = raised(check_huawei_response, huawei_answer(400, code), "similarity")
    assert class_of(error) is HUAWEI_CODES[code]
    assert error is not None and (error.check, error.status, error.code) == ("similarity", 400, code)
    assert str(error).startswith(f"similarity: ImageSearch HTTP 400 {code}: token [redacted]")
    assert str(error).endswith(f"({rule.note})") and SECRET not in str(error)
    if isinstance(error, PermanentError):
        assert error.concerns_content is (
            rule.content is not False
        )  # the table's word, else a code: the upload


def test_an_unknown_huawei_code_is_permanent() -> None:
    error = raised(check_huawei_response, huawei_answer(400, "IS.9999"), "similarity")
    assert type(error) is PermanentError and error.code == "IS.9999"


@pytest.mark.parametrize("name", TABLES)
def test_a_vendor_table_holds_only_what_is_its_own(name: str) -> None:
    """The generic HTTP rules are kept once: a vendor lists a status only to say more about it."""
    table = TABLES[name]
    assert all(HTTP_STATUSES.get(status) != rule for status, rule in table.statuses.items())
    assert {**HTTP_STATUSES, **table.statuses} == dict(table.listed_statuses)
    assert all(table.for_status(status) == rule for status, rule in table.listed_statuses.items())


def test_a_vendor_meaning_wins_over_the_generic_one() -> None:
    assert HIVE_ERRORS.for_status(405).note == "insufficient account balance"
    assert HUAWEI_ERRORS.for_status(405) == Rule(Outcome.PERMANENT)  # HTTP gives it no entry


# --- the default rule for statuses no table lists --------------------------------------------------


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("status", UNKNOWN_5XX)
def test_an_unknown_5xx_is_transient(name: str, status: int) -> None:
    table = TABLES[name]
    assert status not in table.listed_statuses
    error = error_for(table, "visual", status=status, message="down")
    assert type(error) is TransientError and error.status == status
    mapper = check_response if name == "hive" else check_huawei_response
    assert type(raised(mapper, httpx.Response(status, text="down"), "visual")) is TransientError


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("status", UNKNOWN_OTHERS)
def test_any_other_unknown_status_is_permanent(name: str, status: int) -> None:
    table = TABLES[name]
    assert status not in table.listed_statuses
    error = error_for(table, "visual", status=status, message="odd")
    assert type(error) is PermanentError and error.status == status
    assert not error.concerns_content  # no code, not a content status: about the caller
    mapper = check_response if name == "hive" else check_huawei_response
    assert type(raised(mapper, httpx.Response(status, text="odd"), "visual")) is PermanentError


# --- status and code together (Huawei sends both) --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "IS.0001", TransientError),  # a 5xx is retried whatever the code says
        (400, "IS.0012", TransientError),  # a retryable code on a 400
        (200, "IS.0004", PermanentError),  # an error code on a 200 is still an error
        (200, "IS.0012", TransientError),
        (429, "IS.0004", RateLimitedError),  # a 429 is rate limited whatever the code says
        (429, "APIGW.0308", RateLimitedError),
        (400, "APIGW.0308", TransientError),
    ],
)
def test_the_more_retryable_of_status_and_code_wins(
    status: int, code: str, expected: type[ProviderError]
) -> None:
    error = raised(check_huawei_response, huawei_answer(status, code), "similarity")
    assert type(error) is expected and error is not None and error.status == status


def test_on_a_tie_the_code_names_the_meaning() -> None:
    error = error_for(HUAWEI_ERRORS, "similarity", status=400, code="IS.0004", message="bad token")
    assert str(error) == "similarity: ImageSearch HTTP 400 IS.0004: bad token (token verification failed)"


# --- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5), ("soon", None)])
def test_a_rate_limit_carries_retry_after(header: str, seconds: float | None) -> None:
    hive = raised(check_response, hive_answer(429, **{"retry-after": header}), "visual")
    huawei = raised(check_huawei_response, huawei_answer(429, "APIGW.0308", **{"Retry-After": header}), "s")
    for error in (hive, huawei):
        assert isinstance(error, RateLimitedError) and error.retry_after == seconds and error.status == 429
        assert SECRET not in str(error)


def test_a_rate_limit_without_retry_after_carries_none() -> None:
    error = raised(check_response, hive_answer(429), "visual")
    assert isinstance(error, RateLimitedError) and error.retry_after is None


def test_error_for_carries_the_given_retry_after() -> None:
    error = error_for(HIVE_ERRORS, "visual", status=429, message="slow down", retry_after=3.5)
    assert isinstance(error, RateLimitedError) and error.retry_after == 3.5


# --- messages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TABLES)
def test_no_message_carries_a_registered_secret(name: str) -> None:
    table = TABLES[name]
    echo = f"Authorization: token {SECRET}; X-Auth-Token: {SECRET}; you sent {SECRET.upper()} {SECRET}"
    answers: list[tuple[int | None, str | None]] = [
        (s, None) for s in [*table.listed_statuses, *UNKNOWN_5XX, *UNKNOWN_OTHERS]
    ]
    answers += [(None, c) for c in table.codes] + [(400, c) for c in table.codes]
    for status, code in answers:
        error = error_for(table, "visual", status=status, code=code, message=echo)
        assert error is None or (SECRET not in str(error) and "[redacted]" in str(error))


@pytest.mark.parametrize("name", TABLES)
def test_notes_are_short_and_messages_bounded(name: str) -> None:
    table = TABLES[name]
    rules = [*table.listed_statuses.values(), *table.codes.values(), *table.code_prefixes.values()]
    assert all(rule.note and len(rule.note) <= MAX_NOTE for rule in rules)
    error = error_for(table, "visual", status=400, message="x" * 100_000)
    assert error is not None and len(str(error)) < 400


def test_an_empty_provider_message_says_so() -> None:
    error = error_for(HIVE_ERRORS, "csam", code="3002", message="")
    assert str(error) == "csam: Hive task error 3002: no message (unsupported or corrupt media)"


# --- the table type --------------------------------------------------------------------------------


def test_a_changed_class_is_caught() -> None:
    flipped = dataclasses.replace(
        HIVE_ERRORS, statuses={**HIVE_ERRORS.statuses, 503: Rule(Outcome.PERMANENT)}
    )
    assert status_classes(flipped) != HIVE_STATUSES
    demoted = dataclasses.replace(
        HUAWEI_ERRORS, codes={**HUAWEI_ERRORS.codes, "IS.0012": Rule(Outcome.PERMANENT)}
    )
    assert code_classes(demoted) != HUAWEI_CODES


@pytest.mark.parametrize(
    "changes",
    [
        {"codes": {"X.1": Rule(Outcome.RATE_LIMITED)}},
        {"code_prefixes": {"X": Rule(Outcome.RATE_LIMITED)}},
        {"unknown_code": Rule(Outcome.RATE_LIMITED)},
        {"statuses": {400: Rule(Outcome.PERMANENT, "n" * (MAX_NOTE + 1))}},
        {"code_prefixes": {"": Rule(Outcome.PERMANENT)}},
    ],
)
def test_a_table_that_cannot_be_mapped_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ErrorTable(**{"vendor": "V", "statuses": {}, **changes})


def test_tables_are_immutable() -> None:
    with pytest.raises(TypeError):
        HIVE_ERRORS.statuses[503] = Rule(Outcome.PERMANENT)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        HIVE_ERRORS.vendor = "Other"  # type: ignore[misc]


def test_the_longest_prefix_wins() -> None:
    table = ErrorTable(
        "V",
        {},
        code_prefixes={"2": Rule(Outcome.TRANSIENT, "family"), "29": Rule(Outcome.PERMANENT, "sub")},
    )
    assert table.for_code("2901").note == "sub" and table.for_code("2101").note == "family"
    assert table.for_code("2") == Rule(Outcome.TRANSIENT, "family")


@pytest.mark.parametrize(
    ("table", "status", "code", "content"),
    [
        (HIVE_ERRORS, None, "3002", True),  # corrupt media: the upload's own dead letter
        (HIVE_ERRORS, 415, None, True),
        (HIVE_ERRORS, 403, None, False),  # a wrong key: every upload would fail alike
        (HUAWEI_ERRORS, 400, "IS.0008", True),
        (HUAWEI_ERRORS, 400, "IS.0004", False),  # token verification failed: the caller, not the upload
        (HUAWEI_ERRORS, 400, "APIGW.0301", False),
    ],
)
def test_the_table_says_whether_a_refusal_concerns_the_upload(
    table: ErrorTable, status: int | None, code: str | None, content: bool
) -> None:
    error = error_for(table, "similarity", status=status, code=code, message="no")
    assert isinstance(error, PermanentError) and error.concerns_content is content
