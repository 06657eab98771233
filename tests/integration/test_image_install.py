"""The container image's install step (``docker/install.sh``, which the Dockerfile runs too), run
here without a container engine: the locked dependencies (``requirements.lock``, by hash) and the
wheel installed into a fresh environment, made read-only, and the service started from it as an
unprivileged user with no writable home and only a temporary directory to write to, against the test
broker, registry and simulator. It gives verdicts, and on SIGTERM it drains and exits 0. The image's
SBOM (``docker/sbom.sh``, as the Dockerfile's build stage runs it) lists every locked distribution
at its locked version; two installs of one lock and wheel are the same bytes, with the same SBOM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

import consumer
from consumer.core.records import MediaType
from moderation_devtools.lock import REQUIREMENTS_LOCK, locked
from moderation_devtools.stack import (
    SimulatorProcess,
    consumer_env,
    json_log_lines,
    produce_uploads,
    read_verdicts,
    upload,
)

from .conftest import Topics

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
UNPRIVILEGED = 65534  # nobody


def as_unprivileged(command: list[str]) -> list[str]:
    """``command`` as uid/gid 65534 when we are root; as ourselves (already unprivileged) otherwise."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop to an unprivileged user"
    return [setpriv, f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", *command]


def interpreter() -> str:
    """A Python the unprivileged user can run (a pyenv under /root is not reachable by it)."""
    candidates = [
        sys.executable,
        shutil.which("python3.11"),
        "/usr/bin/python3.11",
        "/usr/local/bin/python3.11",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                as_unprivileged([candidate, "-c", "import venv, ensurepip"]),
                capture_output=True,
                check=False,
                cwd="/",
            )
            if probe.returncode == 0:
                return candidate
    raise AssertionError(f"no Python 3.11 the unprivileged user can run among {candidates}")


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """The install, as the image has it: /opt/moderation stands at ``<root>/opt/moderation``."""
    root = Path(tempfile.mkdtemp(prefix="moderation-image-"))
    root.chmod(0o755)
    try:
        wheels = root / "wheels"
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},  # as the Dockerfile builds it
        )
        assert built.returncode == 0, built.stderr[-2000:]
        install(wheels, root / "opt" / "moderation")
        yield root
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_the_image_install_is_production_only_and_read_only(image_root: Path) -> None:
    prefix = image_root / "opt" / "moderation"
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "consumer" / "schemas" / "ModerationVerdict.avsc").exists()
    for tool in ("simulator", "devtools", "moderation_simulator", "moderation_devtools"):
        assert not (site / tool).exists(), tool
    assert not {"av", "numpy", "pdqhash"} & {p.name.split("-")[0].lower() for p in site.iterdir()}
    probe = subprocess.run(
        as_unprivileged(["sh", "-c", f"touch {site}/x || exit 0; exit 1"]), capture_output=True, check=False
    )
    assert probe.returncode == 0, "the installed application must not be writable at run time"


def installed_distributions(prefix: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution in the environment at ``prefix``."""
    site = next(prefix.glob("lib/python3*/site-packages"))
    found: dict[str, str] = {}
    for info in site.glob("*.dist-info"):
        meta = (info / "METADATA").read_text(errors="replace").split("\n\n", 1)[0]
        fields = dict(line.split(": ", 1) for line in meta.splitlines() if ": " in line)
        found[canonicalize_name(fields["Name"])] = fields["Version"]
    return found


def test_the_image_environment_is_the_lock_and_the_wheel_exactly(image_root: Path) -> None:
    pins = {name: pin.version for name, pin in locked().items()}
    assert installed_distributions(image_root / "opt" / "moderation") == {
        **pins,
        "moderation-consumer": consumer.__version__,
    }


def install(wheels: Path, prefix: Path) -> None:
    """``docker/install.sh WHEELS PREFIX requirements.lock``, as the image's build stage runs it."""
    installed = subprocess.run(
        ["sh", str(REPO / "docker" / "install.sh"), str(wheels), str(prefix), str(REQUIREMENTS_LOCK)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": interpreter()},
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert installed.stdout.splitlines()[-1].startswith("moderation-consumer ")


def sbom(prefix: Path, output: Path) -> bytes:
    """``docker/sbom.sh PREFIX OUTPUT`` with the dev environment's cyclonedx-py (the lock's version)."""
    tool = Path(sys.executable).parent / "cyclonedx-py"
    assert tool.exists(), "cyclonedx-py is missing: make install (dev/pyproject.toml's cyclonedx-bom)"
    made = subprocess.run(
        ["sh", str(REPO / "docker" / "sbom.sh"), str(prefix), str(output)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CYCLONEDX_PY": str(tool)},
        timeout=300,
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    return output.read_bytes()


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """``{relative path: (mode, sha256 or link target)}`` of everything under ``root``."""
    found: dict[str, tuple[int, str]] = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if path.is_symlink():
            found[str(path.relative_to(root))] = (mode, os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(root))] = (mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def test_the_sbom_lists_every_locked_distribution(image_root: Path) -> None:
    document = json.loads(sbom(image_root / "opt" / "moderation", image_root / "sbom.cdx.json"))
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    listed: dict[str, dict[str, Any]] = {canonicalize_name(c["name"]): c for c in document["components"]}
    expected = {name: pin.version for name, pin in locked().items()}
    expected["moderation-consumer"] = consumer.__version__
    assert set(listed) == set(expected), set(listed) ^ set(expected)
    for name, version in expected.items():
        assert listed[name]["version"] == version, name
        if name != "moderation-consumer":  # from the index: a package URL
            assert listed[name]["purl"] == f"pkg:pypi/{name}@{version}", listed[name]["purl"]
    # ours came from the wheel file: the SBOM names it by its sha256
    ours = listed["moderation-consumer"]
    assert ours["licenses"] == [{"license": {"acknowledgement": "declared", "id": "Apache-2.0"}}]
    (wheel,) = (image_root / "wheels").glob("moderation_consumer-*.whl")
    (source,) = (ref for ref in ours["externalReferences"] if ref["type"] == "distribution")
    assert source["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]


def test_two_installs_of_one_lock_and_wheel_are_the_same_bytes_and_sbom(image_root: Path) -> None:
    """The first install is moved aside, a second made at the same prefix (paths are written into
    scripts and bytecode), and every file, mode and link compared, then the first put back."""
    prefix = image_root / "opt" / "moderation"
    first_sbom = sbom(prefix, image_root / "first.cdx.json")
    first_tree = tree(prefix)
    aside = image_root / "opt" / "first"
    prefix.rename(aside)
    try:
        install(image_root / "wheels", prefix)
        second_tree = tree(prefix)
        second_sbom = sbom(prefix, image_root / "second.cdx.json")
    finally:
        if prefix.exists():
            subprocess.run(["chmod", "-R", "u+w", str(prefix)], check=True)
            shutil.rmtree(prefix)
        aside.rename(prefix)
    differ = sorted(
        path
        for path in first_tree.keys() | second_tree.keys()
        if first_tree.get(path) != second_tree.get(path)
    )
    assert not differ, differ[:20]
    assert first_sbom == second_sbom


def test_the_installed_service_runs_unprivileged_read_only_and_drains_on_sigterm(
    image_root: Path, kafka_bootstrap: str, topics: Topics, sim: SimulatorProcess, registry_url: str
) -> None:
    writable = Path(tempfile.mkdtemp(prefix="moderation-tmp-"))
    writable.chmod(0o1777)
    log = writable / "consumer.log"
    env = consumer_env(
        kafka_bootstrap,
        sim.url,
        group=topics.group,
        topics=topics.env(),
        MODERATION_KAFKA__CREATE_TOPICS="false",
        MODERATION_SCHEMA_REGISTRY__URL=registry_url,
        MODERATION_SCHEMA_REGISTRY__AUTO_REGISTER="true",
    )
    # what the image sets: no writable home, only a temporary directory, no bytecode writes
    env.update(HOME="/nonexistent", TMPDIR=str(writable), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    uploads = [upload(MediaType.TEXT, text=f"hello from the image {i}") for i in range(3)]
    produce_uploads(kafka_bootstrap, topics.input, uploads)
    command = as_unprivileged([str(image_root / "opt" / "moderation" / "bin" / "moderation-consumer"), "run"])
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT)
    try:
        from consumer.config import load_settings
        from consumer.schema_registry import codec_for

        codec = codec_for(load_settings(schema_registry={"url": registry_url}))
        try:
            verdicts = read_verdicts(
                kafka_bootstrap, topics.verdicts, {u.upload_id for u in uploads}, timeout=120, codec=codec
            )
        finally:
            codec.close()
        assert {v.upload_id for v in verdicts} == {u.upload_id for u in uploads}, log.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = json_log_lines(log)
    assert any(line.get("msg") == "stopped" for line in lines), log.read_text()[-3000:]
    assert not any(line.get("level") == "error" for line in lines), log.read_text()[-3000:]
    shutil.rmtree(writable, ignore_errors=True)
