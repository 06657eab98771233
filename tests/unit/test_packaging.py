"""Packaging, checked offline: the lock the image installs from (``requirements.lock``) is in step
with ``pyproject.toml`` (every dependency pinned within its range, every dependency of a pinned
distribution pinned too, nothing pinned that nothing needs, every file hashed); the build's tools
lock agrees with the ranges the repository declares; the Dockerfile installs from both with
``--require-hashes``, and the wheel it builds is the same bytes from the same sources; the
project's metadata; and ``make helm`` and ``make prometheus`` take the tools on PATH when they are
new enough (and only then)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from moderation_devtools.lock import BUILD_TOOLS_LOCK, REQUIREMENTS_LOCK, TARGET, locked

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEV = tomllib.loads((REPO / "dev" / "pyproject.toml").read_text())
REGENERATE = "out of step with pyproject.toml: run `make lock`"


def dependencies() -> list[Requirement]:
    return [Requirement(text) for text in PROJECT["project"]["dependencies"]]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether ``requirement`` holds on the image's platform for a distribution wanted with ``extras``."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**TARGET, "extra": extra}) for extra in extras | {""})


def test_every_dependency_is_locked_within_its_range() -> None:
    pins = locked()
    for requirement in dependencies():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: {REGENERATE}"
        assert Version(pins[name].version) in requirement.specifier, (
            f"requirements.lock pins {name}=={pins[name].version}, "
            f"outside {requirement.specifier}: {REGENERATE}"
        )


def test_the_lock_is_closed_and_holds_nothing_unneeded() -> None:
    """Walked from pyproject.toml's dependencies through each pinned distribution's own requirements
    (its metadata, as installed by `make install` at the locked version), with markers judged for
    the image: every requirement met by a pin, and every pin reached."""
    pins = locked()
    wanted: dict[str, set[str]] = {}
    queue = [(requirement, "pyproject.toml") for requirement in dependencies()]
    while queue:
        requirement, by = queue.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (needed by {by}) is not in requirements.lock: {REGENERATE}"
        assert Version(pins[name].version) in requirement.specifier, (
            f"{by} needs {requirement}, requirements.lock pins {pins[name].version}: {REGENERATE}"
        )
        extras = set(requirement.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        wanted[name] = wanted.get(name, set()) | extras
        try:
            installed = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is locked but not installed here: run `make install`")
        assert installed.version == pins[name].version, (
            f"{name} {installed.version} is installed, the lock pins {pins[name].version}: run `make install`"
        )
        for text in installed.requires or []:
            child = Requirement(text)
            if applies(child, wanted[name]):
                queue.append((child, f"{name} {pins[name].version}"))
    assert set(pins) == set(wanted), f"pinned but needed by nothing: {sorted(set(pins) - set(wanted))}"


@pytest.mark.parametrize("lock", [REQUIREMENTS_LOCK, BUILD_TOOLS_LOCK], ids=lambda p: p.name)
def test_every_locked_distribution_is_hashed(lock: Path) -> None:
    pins = locked(lock)
    assert pins
    for name, pin in pins.items():
        assert pin.hashes, f"{lock.name}: {name} has no --hash (uv pip compile --generate-hashes)"
    assert "make lock" in lock.read_text().splitlines()[1], "the header names how to regenerate it"


def test_the_build_tools_lock_keeps_the_repositorys_ranges() -> None:
    """docker/build-tools.lock's setuptools builds the wheel as [build-system] allows, and its
    cyclonedx-bom is the one the tests make the SBOM with (dev/pyproject.toml)."""
    pins = locked(BUILD_TOOLS_LOCK)
    declared = {
        canonicalize_name(r.name): r.specifier
        for r in map(Requirement, [*PROJECT["build-system"]["requires"], *DEV["project"]["dependencies"]])
    }
    source = [
        Requirement(line.split("#")[0])
        for line in (REPO / "docker" / "build-tools.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert {canonicalize_name(r.name) for r in source} == {"setuptools", "cyclonedx-bom"}
    for requirement in source:
        name = canonicalize_name(requirement.name)
        assert requirement.specifier == declared[name], (
            f"docker/build-tools.in's {name} range is not the repository's"
        )
        assert Version(pins[name].version) in requirement.specifier, f"docker/build-tools.lock: {REGENERATE}"


def test_the_image_installs_from_the_locks_only() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    install = (REPO / "docker" / "install.sh").read_text()
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "--require-hashes --only-binary :all: -r docker/build-tools.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile  # the wheel is built with the locked setuptools
    assert "sh docker/install.sh /wheels /opt/moderation requirements.lock" in dockerfile
    assert "sh docker/sbom.sh /opt/moderation /sbom/sbom.cdx.json" in dockerfile
    assert "COPY --from=build /sbom/sbom.cdx.json /app/sbom.cdx.json" in dockerfile
    assert '--require-hashes --only-binary :all: --no-deps $source_flags -r "$lock"' in install
    assert '--no-deps --no-index "$wheel"' in install
    for needed in ("requirements.lock", "docker/build-tools.lock", "docker/install.sh", "docker/sbom.sh"):
        assert f"!{needed}" in ignored, f".dockerignore leaves {needed} out of the build context"


def test_the_project_metadata() -> None:
    project = PROJECT["project"]
    assert project["requires-python"] == ">=3.11"  # no cap: a cap refuses every later Python
    assert project["license"] == "Apache-2.0"
    classifiers = set(project["classifiers"])
    for minor in (11, 12, 13, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression alone
    assert set(project["urls"]) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert Requirement(PROJECT["build-system"]["requires"][0]).specifier.contains("77")  # PEP 639


def test_the_wheel_is_the_same_bytes_from_the_same_sources(tmp_path: Path) -> None:
    """As the Dockerfile builds it (SOURCE_DATE_EPOCH fixed, no build isolation): two checkouts of
    one commit, their files of different times, give one wheel."""
    wheels = []
    for attempt, when in enumerate((1_600_000_000, 1_700_000_000)):
        src = tmp_path / f"src{attempt}"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE", "schemas", "consumer"):
            path = REPO / name
            if path.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
            else:
                shutil.copy2(path, src / name)
        for path in src.rglob("*"):
            os.utime(path, (when, when), follow_symlinks=False)
        built = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
                *("--disable-pip-version-check", "-w", str(tmp_path / f"dist{attempt}"), str(src)),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
        )
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        (wheel,) = (tmp_path / f"dist{attempt}").glob("moderation_consumer-*.whl")
        wheels.append(wheel.read_bytes())
    assert wheels[0] == wheels[1]


def executable(folder: Path, name: str, output: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("version", "taken"), [("v3.19.2", True), ("v3.21.4", True), ("v3.12.3", False), ("v4.0.1", False)]
)
def test_make_helm_takes_a_new_enough_helm_on_path(tmp_path: Path, version: str, taken: bool) -> None:
    executable(tmp_path, "helm", version)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    chosen = subprocess.run(
        [sys.executable, "-c", "from moderation_devtools import chart; print(chart.ensure_helm())"]
        if taken
        else [sys.executable, "-c", "from moderation_devtools import chart; print(chart.helm_binary())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert (chosen == str(tmp_path / "helm")) is taken, chosen


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder an unprivileged user can read (pytest's own are its owner's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="moderation-tools-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_install_prometheus(folder: Path) -> subprocess.CompletedProcess[str]:
    """.ci/install-prometheus with ``folder`` first on PATH, as an unprivileged user."""
    script = folder / "install-prometheus"
    shutil.copy(REPO / ".ci" / "install-prometheus", script)
    script.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    command = ["env", f"PATH={folder}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "bash", str(script)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop to an unprivileged user"
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    elif subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0:
        pytest.skip("passwordless sudo: the script would install Debian's package")
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60, cwd="/")


def test_make_prometheus_takes_new_enough_tools_on_path(public_dir: Path) -> None:
    executable(public_dir, "promtool", "promtool, version 3.5.0 (branch: HEAD, revision: x)")
    executable(public_dir, "prometheus", "prometheus, version 2.53.1 (branch: HEAD, revision: x)")
    done = run_install_prometheus(public_dir)
    assert done.returncode == 0 and not done.stderr, done.stderr


def test_make_prometheus_without_root_says_how_to_get_them(public_dir: Path) -> None:
    executable(public_dir, "promtool", "promtool, version 2.30.3 (branch: HEAD, revision: x)")
    executable(public_dir, "prometheus", "prometheus, version 2.53.1 (branch: HEAD, revision: x)")
    done = run_install_prometheus(public_dir)
    assert done.returncode == 1
    assert "promtool: 2.30.3" in done.stderr
    assert "needs root or passwordless sudo" in done.stderr
    assert "sudo apt-get install prometheus" in done.stderr and "prometheus.io/download" in done.stderr
