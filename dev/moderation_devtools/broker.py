"""A real single-node Apache Kafka broker (KRaft, combined mode) on 127.0.0.1 for tests, demo and bench.

The jars come from Maven Central (``kafka-pom.xml``, beside this module) into a cache outside git;
a second run reuses them. Nothing here is used by the service itself.

``python -m moderation_devtools.broker start|stop [--dir .local/kafka] [--port N]`` runs one by hand
(``start`` prints its bootstrap address).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "LocalKafka",
    "ensure_jars",
    "free_port",
    "main",
    "new_cluster_id",
    "wait_for_kafka",
]

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().with_name("kafka-pom.xml")


class BrokerError(RuntimeError):
    """The local broker could not be prepared, started or reached."""


def cache_dir() -> Path:
    base = os.environ.get("MODERATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moderation-consumer"
    )
    return Path(base)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_jars() -> Path:
    """Gather the Kafka jars with Maven once; return the folder holding them."""
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars; install maven and JDK 17")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        f"-Dkafka.version={KAFKA_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(f"fetching Kafka jars failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    marker.write_text(KAFKA_VERSION)
    return libs


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until the Admin API answers with at least one broker, or raise BrokerError."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet_logger()}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # the broker is still starting; retry until the deadline
            last = exc
        time.sleep(0.2)
    raise BrokerError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last}")


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("moderation_devtools.broker.librdkafka")
    logger.setLevel(logging.CRITICAL)
    return logger


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=268435456
"""

LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


@dataclass
class LocalKafka:
    """One broker in ``workdir``; ``start()`` returns its bootstrap address."""

    workdir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "768m"
    log_level: str = "WARN"
    host: str = "127.0.0.1"
    launcher: list[str] = field(default_factory=list)  # e.g. ``ip netns exec <ns>``: where it runs
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "kafka.pid"

    def _configure(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        props = self.workdir / "server.properties"
        props.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(
            LOG4J2.format(log=self.workdir / "server.log", level=self.log_level)
        )
        return props

    def _properties(self) -> str:
        return SERVER_PROPERTIES.format(
            port=self.port, cport=self.controller_port, data=self.workdir / "data"
        )

    def _format_args(self, cluster_id: str) -> list[str]:
        return ["--standalone", f"--cluster-id={cluster_id}"]  # one token: an id may start with "-"

    def _java(self, libs: Path, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java (JDK 17+) is needed to run the local Kafka broker")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self, timeout: float = 90.0, cluster_id: str | None = None, wait: bool = True) -> str:
        """Format the storage on a first start (with ``cluster_id``, else a new one), launch the
        broker and, with ``wait``, return once its Admin API answers."""
        libs = ensure_jars()
        first_start = not (self.workdir / "data" / "meta.properties").exists()
        if not first_start and self.port == 0:
            raise BrokerError("restarting an existing broker needs its port")
        props = self._configure()
        if first_start:
            cluster_id = cluster_id or new_cluster_id()
            fmt = subprocess.run(
                self._java(
                    libs,
                    "kafka.tools.StorageTool",
                    "format",
                    *self._format_args(cluster_id),
                    "-c",
                    str(props),
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed: {fmt.stdout}{fmt.stderr}")
        out = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [*self.launcher, *self._java(libs, "kafka.Kafka", str(props))],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.pid_file.write_text(f"{self.process.pid} {self.port} {self.controller_port}\n")
        if not wait:
            return self.bootstrap
        try:
            wait_for_kafka(self.bootstrap, timeout)
        except BrokerError:
            code = self.process.poll()
            self.stop()
            tail = (
                (self.workdir / "server.log").read_text(errors="replace")[-3000:]
                if (self.workdir / "server.log").exists()
                else ""
            )
            raise BrokerError(
                f"broker did not become ready (exit code {code}); server.log tail:\n{tail}"
            ) from None
        return self.bootstrap

    def kill(self) -> None:
        """SIGKILL, for chaos tests: the data stays and ``start()`` brings the same broker back."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self.process):
            time.sleep(0.1)
        if _alive(pid, self.process):
            os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        self.pid_file.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        if self.pid_file.exists():
            return int(self.pid_file.read_text().split()[0])
        return None

    @classmethod
    def attach(cls, workdir: Path) -> LocalKafka:
        """The broker a previous ``start`` left running in ``workdir`` (for the stop command)."""
        kafka = cls(workdir)
        pid_file = kafka.pid_file
        if pid_file.exists():
            _, port, cport = pid_file.read_text().split()
            kafka.port, kafka.controller_port = int(port), int(cport)
        return kafka


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moderation_devtools.broker", description="the local single-node Kafka broker"
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path(".local/kafka"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(LocalKafka(args.dir.resolve(), port=args.port).start(), flush=True)
        else:
            LocalKafka.attach(args.dir.resolve()).stop()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
