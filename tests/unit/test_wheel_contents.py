"""Only the product ships: the wheel (what the image installs) holds the ``consumer`` package and its
``.dist-info`` alone, with the Avro contract (built from the top-level ``schemas/``, which
``consumer/schemas`` links to) and the default policy inside it; the simulator and the developer
tools stay in the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what the image's build stage copies (.dockerignore); a stale build/ of the checkout stays out
SOURCES = ("pyproject.toml", "README.md", "schemas", "consumer")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(
                path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(path, src / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",  # the dev environment's setuptools: offline, no download
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(root / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("moderation_consumer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_the_consumer_package_alone(wheel_names: set[str]) -> None:
    top = {name.split("/", 1)[0] for name in wheel_names}
    extra = {t for t in top if t != "consumer" and not t.endswith(".dist-info")}
    assert not extra, f"only consumer/ and its .dist-info may ship, found {sorted(extra)}"
    assert "consumer/__init__.py" in wheel_names and "consumer/py.typed" in wheel_names


def test_the_wheel_carries_the_contract_and_the_default_policy(wheel_names: set[str]) -> None:
    contract = {p.relative_to(REPO).as_posix() for p in (REPO / "schemas").rglob("*.avsc")}
    assert contract, "the top-level schemas/ holds the Avro contract"
    shipped = {name.removeprefix("consumer/") for name in wheel_names if name.endswith(".avsc")}
    assert shipped == contract
    assert "consumer/policy/default_policy.yaml" in wheel_names


def test_the_package_reads_the_contract_from_the_top_level_schemas() -> None:
    # the editable install finds the same files through the consumer/schemas link
    assert (REPO / "consumer" / "schemas").resolve() == (REPO / "schemas").resolve()
    packaged = resources.files("consumer") / "schemas"
    found = {entry.name for entry in packaged.iterdir() if entry.name.endswith(".avsc")}
    assert found == {p.name for p in (REPO / "schemas").glob("*.avsc")}
    assert (packaged / "history").is_dir()
