"""What Hive's answers mean (pure data): HTTP statuses and task-level status codes, as an
``ErrorTable`` that ``hive_answers`` maps every answer through.

Sources: the task API document's error table (seed ``hive-api-task.txt``: 200, 400, 403, 404, 405,
429, 500, 503, 504), ../shared/DESIGN.md section 2 (429 answers ``{return_code: 429, message}``;
task codes 2xxx are download failures, retryable; 3xxx are the classifier refusing the input,
permanent; ``status.code`` is "0" or 200 on success), and the usual meaning of the other HTTP
statuses a gateway may answer with. The numbered task codes are the ones the project's simulator
answers with (docs/simulator.md); any other 2xxx or 3xxx code follows its family.
"""

from __future__ import annotations

from consumer.checks.providers.answers import ErrorTable, Outcome, Rule

__all__ = ["HIVE_ERRORS"]

HIVE_ERRORS = ErrorTable(
    vendor="Hive",
    code_label="task error",
    statuses={
        200: Rule(Outcome.OK, "everything worked"),
        400: Rule(Outcome.PERMANENT, "bad request: the request could not be accepted"),
        401: Rule(Outcome.PERMANENT, "unauthorized: no valid API key"),
        403: Rule(Outcome.PERMANENT, "unauthorized: the API key is wrong"),
        404: Rule(Outcome.PERMANENT, "not found: no such endpoint"),
        405: Rule(Outcome.PERMANENT, "insufficient account balance"),
        408: Rule(Outcome.TRANSIENT, "request timeout"),
        413: Rule(Outcome.PERMANENT, "payload too large", content=True),
        415: Rule(Outcome.PERMANENT, "unsupported media type", content=True),
        422: Rule(Outcome.PERMANENT, "unprocessable content", content=True),
        425: Rule(Outcome.TRANSIENT, "too early"),
        429: Rule(Outcome.RATE_LIMITED, "too many requests"),
        500: Rule(Outcome.TRANSIENT, "internal server error"),
        502: Rule(Outcome.TRANSIENT, "bad gateway"),
        503: Rule(Outcome.TRANSIENT, "service unavailable: offline for maintenance"),
        504: Rule(Outcome.TRANSIENT, "gateway timeout"),
    },
    codes={
        "0": Rule(Outcome.OK, "success"),
        "200": Rule(Outcome.OK, "success"),
        "2001": Rule(Outcome.TRANSIENT, "media download failed"),
        "2002": Rule(Outcome.TRANSIENT, "media download failed: malformed media URL"),
        "2003": Rule(Outcome.TRANSIENT, "media download failed: host not reachable"),
        "2004": Rule(Outcome.TRANSIENT, "media download failed: media too large"),
        "3001": Rule(Outcome.PERMANENT, "media type not supported by the custom index", content=True),
        "3002": Rule(Outcome.PERMANENT, "unsupported or corrupt media", content=True),
        "3003": Rule(Outcome.PERMANENT, "image too small for hash matching", content=True),
    },
    code_prefixes={
        "2": Rule(Outcome.TRANSIENT, "media download failed"),
        "3": Rule(Outcome.PERMANENT, "the classifier refused the input", content=True),
    },
    unknown_code=Rule(Outcome.PERMANENT, "task failed"),
)
