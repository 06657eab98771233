"""The wheel runs where the repository is not: built from the checkout, installed into a fresh
virtual environment in a temporary directory, ``moderation-consumer run`` gives an upload its
verdict with the schemas and the default policy it ships, and the production install pulls none of
the simulator's dependencies."""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.core.records import Decision, MediaType
from moderation_devtools.stack import (
    ConsumerProcess,
    SimulatorProcess,
    consumer_env,
    produce_uploads,
    read_verdicts,
    upload,
)

from .conftest import Topics

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh environment (outside the repository) with the wheel installed, without the dev extra."""
    root = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(REPO)], root
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("moderation_consumer-*.whl")
    venv.EnvBuilder(with_pip=True).create(root / "env")
    bin_dir = root / "env" / "bin"
    pip = _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        root,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    yield bin_dir


def test_the_installed_wheel_has_no_simulator_dependencies(installed: Path) -> None:
    listed = _run([str(installed / "python"), "-m", "pip", "list", "--format=freeze"], installed)
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "moderation-consumer" in names
    assert not names & {"av", "numpy", "pdqhash"}, names & {"av", "numpy", "pdqhash"}
    version = _run([str(installed / "moderation-consumer"), "--version"], installed)
    assert version.returncode == 0 and version.stdout.startswith("moderation-consumer ")
    helped = _run([str(installed / "moderation-consumer"), "--help"], installed)
    assert helped.stdout.startswith("usage: moderation-consumer")
    for command in ("run", "dlq", "schemas", "policy"):
        assert command in helped.stdout
    for command in ("simulate", "demo", "broker"):  # development tools: not in the product
        assert command not in helped.stdout
        unknown = _run([str(installed / "moderation-consumer"), command], installed)
        assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    for tool in ("moderation_simulator", "moderation_devtools", "simulator", "devtools"):
        absent = _run([str(installed / "python"), "-c", f"import {tool}"], installed)
        assert absent.returncode != 0, tool


def test_the_installed_wheel_declares_its_licence_pythons_and_links(installed: Path) -> None:
    """What an index or a scanner reads: the SPDX licence, no cap on Python, the project's links."""
    meta = _run(
        [
            str(installed / "python"),
            "-c",
            "import importlib.metadata as m; d = m.metadata('moderation-consumer');"
            "print(d['License-Expression']); print(d['Requires-Python']);"
            "print(*d.get_all('Project-URL'), sep='\\n'); print(*d.get_all('Classifier'), sep='\\n')",
        ],
        installed,
    ).stdout.splitlines()
    assert meta[:2] == ["Apache-2.0", ">=3.11"]
    assert {line.split(",")[0] for line in meta if "https://" in line} == {
        "Homepage",
        "Documentation",
        "Changelog",
        "Issues",
    }
    assert "Programming Language :: Python :: 3.14" in meta


def test_the_installed_wheel_gives_verdicts(
    installed: Path,
    kafka_bootstrap: str,
    topics: Topics,
    sim: SimulatorProcess,
    tmp_path: Path,
    png: Callable[[int], bytes],
) -> None:
    uploads = [
        upload(MediaType.TEXT, upload_id="wheel-text", text="hello from a wheel"),
        upload(MediaType.IMAGE, upload_id="wheel-image", data=png(401), content_type="image/png"),
    ]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    env = consumer_env(kafka_bootstrap, sim.url, group=topics.group, topics=topics.env())
    env["PYTHONPATH"] = ""  # nothing from the checkout: only what the wheel installed
    env.pop("VIRTUAL_ENV", None)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    with open(tmp_path / "consumer.log", "wb") as log:
        process = subprocess.Popen(
            [str(installed / "moderation-consumer"), "run"],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        service = ConsumerProcess(env)
        service.process = process
        try:
            verdicts = read_verdicts(
                kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=90
            )
            assert service.alive, (tmp_path / "consumer.log").read_text()[-3000:]
        finally:
            code = service.terminate(60)
    by_id = {v.upload_id: v for v in verdicts}
    assert set(by_id) == {u.upload_id for u in uploads}, (tmp_path / "consumer.log").read_text()[-3000:]
    assert all(v.decision is Decision.ALLOW for v in by_id.values())
    assert by_id["wheel-text"].policy_version.startswith("default-")  # the shipped default policy
    assert code == 0
    assert (
        "site-packages"
        in _run([str(installed / "python"), "-c", "import consumer; print(consumer.__file__)"], cwd).stdout
    )
