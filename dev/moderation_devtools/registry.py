"""A real schema registry on 127.0.0.1 for tests, demo and bench: Apicurio Registry 3.0.9 (the
last release that runs on JDK 17), in-memory storage, its Confluent-compatible API at
``/apis/ccompat/v7``.

The release comes from Maven Central (``io.apicurio:apicurio-registry-app:3.0.9:tar.gz:all``)
into the same cache as the broker's jars; a second run reuses it. Nothing here is used by the
service itself, which only needs a registry URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from moderation_devtools.broker import cache_dir, free_port

__all__ = ["APICURIO_VERSION", "LocalRegistry", "RegistryError", "ensure_registry"]

APICURIO_VERSION = "3.0.9"
_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
CCOMPAT = "/apis/ccompat/v7"


class RegistryError(RuntimeError):
    """The local registry could not be prepared, started or reached."""


def ensure_registry() -> Path:
    """Fetch and unpack the Apicurio release once; return the folder holding its runner jar."""
    home = cache_dir() / f"apicurio-{APICURIO_VERSION}"
    marker = home / ".complete"
    if marker.exists():
        return home
    if shutil.which("mvn") is None:
        raise RegistryError("Maven (mvn) is needed to fetch Apicurio Registry; install maven and JDK 17")
    download = home / "download"
    download.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={_ARTIFACT}", f"-DoutputDirectory={download}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=download)
    if proc.returncode != 0:
        raise RegistryError(f"fetching {_ARTIFACT} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    (archive,) = download.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(home, filter="data")
    archive.unlink()
    runner = next(home.rglob(_RUNNER), None)
    if runner is None:
        raise RegistryError(f"{_RUNNER} not found in {_ARTIFACT}")
    marker.write_text(str(runner.parent))
    return home


def runner_jar() -> Path:
    home = ensure_registry()
    return Path((home / ".complete").read_text()) / _RUNNER


@dataclass
class LocalRegistry:
    """One Apicurio Registry in ``workdir``; ``start()`` returns its Confluent-compatible URL."""

    workdir: Path
    port: int = 0
    heap: str = "384m"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """What ``schema_registry.url`` is set to (the Confluent-compatible API)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT}"

    def start(self, timeout: float = 180.0) -> str:
        java = shutil.which("java")
        if java is None:
            raise RegistryError("java (JDK 17+) is needed to run the local schema registry")
        jar = runner_jar()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # starts in about half the time on a busy 2-core machine
            "-Djava.awt.headless=true",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.log.level=WARN",
            "-Dquarkus.banner.enabled=false",
            "-jar",
            str(jar),
        ]
        out = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            cmd,
            cwd=jar.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ready():
                return self.url
            time.sleep(0.25)
        code = self.process.poll()
        self.stop()
        tail = (self.workdir / "registry.log").read_text(errors="replace")[-3000:]
        raise RegistryError(f"schema registry did not become ready (exit code {code}); log tail:\n{tail}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL (an outage for tests); in-memory storage: a restart starts empty."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: the registry stops answering (an outage) and keeps its schemas for ``thaw``."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
