"""What Hive's answers mean (pure data): the HTTP statuses its documents give a meaning of their
own and its task-level status codes, as an ``ErrorTable`` that ``hive_answers`` maps every answer
through (any other status follows the generic ``answers.HTTP_STATUSES``).

Sources: the task API document's error table (seed ``hive-api-task.txt``: 200, 400, 403, 404, 405,
429, 500, 503, 504), ../shared/DESIGN.md section 2 (429 answers ``{return_code: 429, message}``;
task codes 2xxx are download failures, retryable; 3xxx are the classifier refusing the input,
permanent; ``status.code`` is "0" or 200 on success). The numbered task codes are the ones the
project's simulator answers with (docs/simulator.md); any other 2xxx or 3xxx code follows its family.
"""

from __future__ import annotations

from consumer.checks.providers.answers import ErrorTable, Outcome, Rule

__all__ = ["HIVE_ERRORS"]

HIVE_ERRORS = ErrorTable(
    vendor="Hive",
    code_label="task error",
    statuses={  # where Hive's documents say more than HTTP_STATUSES
        403: Rule(Outcome.PERMANENT, "unauthorized: the API key is wrong"),
        405: Rule(Outcome.PERMANENT, "insufficient account balance"),
        503: Rule(Outcome.TRANSIENT, "service unavailable: offline for maintenance"),
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
