"""The fuzz targets in ``make test``: every seed and every crash ever found, replayed through its
target in this process (deterministic), and a short coverage-guided run of each target as a
subprocess (``FUZZ_SMOKE_SECONDS``, default 5; 0 skips it), which fails on any crash it finds: a
real finding, whose input is kept in the failure message and belongs in ``regressions/<target>/``."""

from __future__ import annotations

import base64
import importlib
import os
from pathlib import Path

import pytest

from tests.fuzz.runner import CORPUS, REGRESSIONS, inputs, run
from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.fuzz

SMOKE_SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "5"))

# Crashes found whose fix is in a file being changed by other work right now: target -> regression
# file -> what is wrong. Strict xfail, so the fix landing turns them into failures: then delete the
# entry. (The smoke of such a target crashes at once on its own regression file: xfail too.)
PENDING: dict[str, dict[str, str]] = {}


def _case(target: str, path: Path) -> object:
    reason = PENDING.get(target, {}).get(path.name) if path.parent.parent == REGRESSIONS else None
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(target, path, marks=marks, id=f"{target}/{path.parent.parent.name}/{path.name}")


def _smoke(target: str) -> object:
    pending = PENDING.get(target)
    marks = [pytest.mark.xfail(strict=True, reason="; ".join(pending.values()))] if pending else []
    return pytest.param(target, marks=marks, id=target)


def test_every_target_has_seeds_and_a_regressions_folder() -> None:
    for target in TARGETS:
        assert any((CORPUS / target).glob("seed-*")), f"no seeds for {target}: python -m tests.fuzz.seeds"
        assert (REGRESSIONS / target).is_dir(), f"tests/fuzz/regressions/{target}/ is missing"
    assert {p.name for p in CORPUS.iterdir()} == set(TARGETS)
    assert {p.name for p in REGRESSIONS.iterdir()} == set(TARGETS)
    for target, cases in PENDING.items():
        assert all((REGRESSIONS / target / name).is_file() for name in cases), (
            f"PENDING names a missing {target} case"
        )


@pytest.mark.parametrize(("target", "path"), [_case(t, p) for t in TARGETS for p in inputs(t)])
def test_replay(target: str, path: Path) -> None:
    """A seed or a past crash goes through its target raising nothing."""
    module = importlib.import_module(f"tests.fuzz.targets.{target}")
    module.test_one_input(path.read_bytes())


@pytest.mark.skipif(SMOKE_SECONDS <= 0, reason="FUZZ_SMOKE_SECONDS=0")
@pytest.mark.parametrize("target", [_smoke(t) for t in TARGETS])
def test_smoke(target: str, tmp_path: Path) -> None:
    """A few seconds of coverage-guided fuzzing finds no crash, hang or runaway allocation."""
    outcome = run(target, SMOKE_SECONDS, tmp_path / "corpus", tmp_path / "crashes")
    if outcome.ok:
        return
    found = "\n".join(
        f"  {p.name} (base64, save it as tests/fuzz/regressions/{target}/<name>): "
        f"{base64.b64encode(p.read_bytes()[:4096]).decode()}"
        for p in outcome.artifacts
    )
    tail = "\n".join(outcome.output.splitlines()[-60:])
    pytest.fail(f"{outcome.summary()}\n{found}\n{tail}", pytrace=False)
