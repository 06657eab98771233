"""Running the fuzz targets: one in this process under atheris (``fuzz_one``), or each as a
subprocess for a while (``run``, what ``make fuzz`` and the smoke in ``make test`` do).

A target's seeds are ``corpus/<target>/`` (see ``seeds.py``), the crashes found so far
``regressions/<target>/``; libFuzzer reads both and writes what it learns into a working corpus
elsewhere, and a crashing input into the artifacts folder given.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.targets import TARGETS

__all__ = ["CORPUS", "HERE", "REGRESSIONS", "Outcome", "command", "fuzz_one", "inputs", "run"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"
# what atheris instruments for coverage (compiled code, orjson or fastavro's reader, is not Python)
INSTRUMENTED = ["consumer", "tests.fuzz", "yaml"]
TIMEOUT_S = 10  # one input running longer is a finding (a hang)
RSS_LIMIT_MB = 1536  # a process growing past this is a finding (a huge allocation)


def inputs(target: str) -> list[Path]:
    """The seeds and regression cases of ``target``, in a stable order."""
    found: list[Path] = []
    for folder in (CORPUS / target, REGRESSIONS / target):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return found


def fuzz_one(target: str, libfuzzer_args: list[str]) -> None:
    """Fuzz ``target`` in this process (never returns normally: libFuzzer exits)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        module = importlib.import_module(f"tests.fuzz.targets.{target}")
    atheris.Setup([sys.argv[0], *libfuzzer_args], module.test_one_input)
    atheris.Fuzz()


def command(target: str, seconds: int, work: Path, artifacts: Path) -> list[str]:
    """The command fuzzing ``target`` for ``seconds``: new inputs into ``work``, crashes into
    ``artifacts``, starting from its seeds and regression cases."""
    folders = [str(work)] + [str(d) for d in (CORPUS / target, REGRESSIONS / target) if d.is_dir()]
    return [
        sys.executable,
        "-m",
        "tests.fuzz",
        target,
        f"-max_total_time={seconds}",
        f"-timeout={TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={TARGETS[target]}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        *folders,
    ]


@dataclass(frozen=True)
class Outcome:
    target: str
    returncode: int
    seconds: float
    output: str  # libFuzzer's and atheris' report (stderr), or what the runner saw
    artifacts: list[Path]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts

    def summary(self) -> str:
        lines = [ln for ln in self.output.splitlines() if ln.startswith(("#", "stat::number_of_executed"))]
        runs = next(
            (ln.split(":")[-1].strip() for ln in lines if ln.startswith("stat::number_of_executed")), "?"
        )
        state = "ok" if self.ok else f"FAILED (exit {self.returncode})"
        return f"{self.target}: {state}, {runs} runs in {self.seconds:.1f}s"


def run(target: str, seconds: int, work: Path, artifacts: Path) -> Outcome:
    """Fuzz ``target`` as a subprocess for about ``seconds``."""
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    started = time.monotonic()
    try:
        done = subprocess.run(
            command(target, seconds, work, artifacts),
            cwd=ROOT,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=seconds + 120,
            check=False,
        )
        returncode, output = done.returncode, done.stderr + done.stdout
    except subprocess.TimeoutExpired as exc:
        returncode, output = -1, f"the fuzzing process did not stop within {exc.timeout}s"
    new = sorted(set(artifacts.iterdir()) - before)
    return Outcome(target, returncode, time.monotonic() - started, output, new)
