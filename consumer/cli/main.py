"""``moderation-consumer <command>`` (or ``python -m consumer``): run | dlq replay, and with the
``dev`` extra installed: simulate | demo | broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consumer import __version__
from consumer.errors import ConfigError

if TYPE_CHECKING:
    from consumer.config import Settings
    from consumer.policy.tenants import PolicyStore

__all__ = ["main"]


def _program() -> str:
    """The name the user typed: the installed script, or ``python -m consumer``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m consumer" if name in ("", "__main__.py", "-c") else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_program(), description="Streaming upload moderation: Kafka uploads in, one Avro verdict out."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{run,dlq,schemas,policy,simulate,demo,broker}"
    )

    run = sub.add_parser("run", help="consume uploads and produce verdicts until SIGTERM")
    run.add_argument("--config", type=Path, help="YAML settings file (env MODERATION_CONFIG)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes in one consumer group under a supervisor (e.g. one per core)",
    )

    sim = sub.add_parser("simulate", help="serve the provider simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8700)
    sim.add_argument("--latency-median-ms", type=float, default=0.0)
    sim.add_argument("--latency-p99-ms", type=float, default=0.0)
    sim.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="PROJECT=KEY",
        help="API key of a project (visual, text, csam, index); repeatable",
    )
    sim.add_argument(
        "--allow-remote-fetch",
        action="store_true",
        help="let media and callback URLs point outside 127.0.0.0/8 (off: loopback only)",
    )
    sim.add_argument("--huawei-token", default=None, help="the X-Auth-Token ImageSearch accepts")
    sim.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="RPS",
        help="per-key token bucket (burst = RPS); beyond it: 429 with Retry-After",
    )
    sim.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help="fault rate 0..1: 500, 502, 503, 504, 429, hang, callback_drop, resend, is0012,"
        " wrong_shape, echo_credentials",
    )
    sim.add_argument("--hang-s", type=float, default=30.0, help="how long a 'hang' fault holds a request")
    sim.add_argument("--seed", type=int, default=1234, help="seed of the fault and latency draws")
    sim.add_argument(
        "--hostile-port",
        type=int,
        default=None,
        metavar="N",
        help="also serve the hostile server on 127.0.0.1:N (0 = a free port; GET /_admin/hostile tells)",
    )

    sub.add_parser("demo", help="broker + simulator + sample uploads, verdicts shown")

    dlq = sub.add_parser("dlq", help="dead letter tools")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    rp = dlq_sub.add_parser(
        "replay",
        help="re-publish chosen dead letters to the topic they came from (after a fix)",
        description="Chooses dead letters by the dead letter topic's partition and offset range and/or"
        " by error class; prints each one replayed and a summary.",
    )
    rp.add_argument("--config", type=Path, help="YAML settings file (env MODERATION_CONFIG)")
    rp.add_argument("--partition", type=int, default=None, help="only this dead letter topic partition")
    rp.add_argument("--from-offset", type=int, default=None, help="first dead letter offset (inclusive)")
    rp.add_argument("--to-offset", type=int, default=None, help="last dead letter offset (inclusive)")
    rp.add_argument(
        "--error-class",
        action="append",
        default=[],
        help="only dead letters of this class (e.g. PermanentError); repeatable",
    )
    rp.add_argument("--to-topic", default=None, help="publish here instead of each one's source topic")
    rp.add_argument("--dry-run", action="store_true", help="list what would be replayed, publish nothing")

    schemas = sub.add_parser(
        "schemas",
        help="the shipped Avro schemas against the schema registry",
        description="register: set each subject's compatibility and register the shipped schemas."
        " check: exit 1 when a shipped schema is not compatible with what the registry holds"
        " (3 when the registry cannot be reached); run it before a deploy.",
    )
    schemas.add_argument("action", choices=["register", "check"])
    schemas.add_argument("--config", type=Path, help="YAML settings file (env MODERATION_CONFIG)")
    schemas.add_argument(
        "--schema-dir",
        type=Path,
        default=None,
        help="schemas to use instead of the shipped ones (a candidate)",
    )

    policy = sub.add_parser(
        "policy",
        help="policy files: check one offline, backtest a candidate on recorded verdicts",
        description="check: validate a policy file as the service does on start and reload (exit 1"
        " when invalid). backtest: decide recorded verdicts again with a candidate policy and print"
        " the transition matrix; no provider is called.",
    )
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    pc = policy_sub.add_parser("check", help="validate a policy file (deploy pipelines run this)")
    pc.add_argument("file", type=Path)
    bt = policy_sub.add_parser("backtest", help="what a candidate policy would have decided")
    bt.add_argument("--candidate", type=Path, required=True, help="the candidate policy file")
    bt.add_argument("--config", type=Path, help="YAML settings file (env MODERATION_CONFIG)")
    bt.add_argument(
        "--input", type=Path, default=None, help="a file of verdicts (Avro container or JSON lines)"
    )
    bt.add_argument("--topic", default=None, help="read this topic (default: kafka.verdict_topic)")
    bt.add_argument("--last", type=int, default=None, metavar="N", help="the last N verdicts")
    bt.add_argument("--since", default=None, help="verdicts written from this ISO 8601 time")
    bt.add_argument("--until", default=None, help="... until this ISO 8601 time")
    bt.add_argument("--partition", type=int, default=None, help="only this partition (with offsets)")
    bt.add_argument("--from-offset", type=int, default=None, help="first offset (inclusive)")
    bt.add_argument("--to-offset", type=int, default=None, help="last offset (inclusive)")
    bt.add_argument("--examples", type=int, default=3, help="examples shown per changed cell")
    bt.add_argument("--json", action="store_true", help="print JSON for machines")

    broker = sub.add_parser("broker", help="the local single-node Kafka broker")
    broker.add_argument("action", choices=["start", "stop"])
    broker.add_argument("--dir", type=Path, default=Path(".local/kafka"))
    broker.add_argument("--port", type=int, default=0)

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.config, args.workers)
        if args.command == "dlq":
            return _replay(args)
        if args.command == "schemas":
            return _schemas(args)
        if args.command == "policy":
            return _policy(args)
        return _developer_command(args)
    except ConfigError as exc:
        return _setting_error(exc)
    except ValueError as exc:  # defence in depth: a settings error that escaped load_settings
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        from consumer.config import config_error_from

        if not isinstance(exc, ValidationError | SettingsError):
            raise
        return _setting_error(config_error_from(exc))


def _developer_command(args: argparse.Namespace) -> int:
    """simulate, demo and broker live in the ``simulator`` and ``devtools`` packages, whose
    dependencies come with the ``dev`` extra."""
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "demo":
            from devtools.demo import run_demo

            return run_demo()
        return _broker(args)
    except ModuleNotFoundError as exc:
        print(
            f"error: {args.command} needs the development tools ({exc.name} is missing):"
            " pip install 'moderation-consumer[dev]'",
            file=sys.stderr,
        )
        return 2


def _setting_error(exc: ConfigError) -> int:
    """One line on stderr, exit code 2 (the message never holds a value or file contents)."""
    line = " ".join("".join(c for c in str(exc) if c.isprintable() or c.isspace()).split())
    print(f"error: {line}", file=sys.stderr)
    return 2


def _replay(args: argparse.Namespace) -> int:
    from consumer.cli.replay import Selection, replay
    from consumer.config import load_settings

    settings = load_settings(args.config)
    try:
        selection = Selection(args.partition, args.from_offset, args.to_offset, frozenset(args.error_class))
    except ValueError as exc:
        raise ConfigError("--from-offset/--to-offset", str(exc)) from None
    try:
        summary = replay(settings, selection, dry_run=args.dry_run, to_topic=args.to_topic)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.table())
    return 0


def _policy(args: argparse.Namespace) -> int:
    from consumer.checks.builtin import default_registry
    from consumer.cli import policy as tools

    registry = default_registry()
    if args.policy_command == "check":
        try:
            return tools.check_policy_file(args.file, registry)
        except ConfigError as exc:
            _setting_error(exc)
            return 1
    if args.input is not None:
        verdicts = tools.read_verdict_file(args.input)
    else:
        from consumer.config import load_settings

        since = None if args.since is None else tools.parse_time(args.since, "--since")
        until = None if args.until is None else tools.parse_time(args.until, "--until")
        chosen = tools.VerdictRange(args.last, since, until, args.partition, args.from_offset, args.to_offset)
        verdicts = tools.read_verdict_topic(load_settings(args.config), chosen, args.topic)
    try:
        tools.backtest(verdicts, args.candidate, registry, as_json=args.json, examples=max(0, args.examples))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from fastavro.schema import SchemaParseException

    from consumer.cli import schemas as schemas_admin
    from consumer.config import load_settings
    from consumer.errors import SerializationError

    settings = load_settings(args.config)
    action = schemas_admin.register if args.action == "register" else schemas_admin.check
    try:
        return action(settings, schema_dir=args.schema_dir)
    except (SerializationError, SchemaParseException, ValueError, KeyError, OSError) as exc:
        raise ConfigError("--schema-dir", f"cannot read the schemas: {type(exc).__name__}: {exc}") from None


def _run(config: Path | None, workers: int = 1) -> int:
    from consumer.config import load_settings
    from consumer.telemetry.logging import configure_logging
    from consumer.wiring import check_settings

    settings = load_settings(config)
    policy = check_settings(settings)
    configure_logging(settings.log_level)
    if workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    if workers > 1:
        from consumer.runtime.supervisor import supervise

        args = ["--config", str(config)] if config else []
        return supervise(workers, args, stop_grace_s=settings.processing.drain_timeout_s + 15)
    if settings.processing.event_loop == "uvloop":
        import uvloop

        return uvloop.run(_serve(settings, policy))
    return asyncio.run(_serve(settings, policy))


# The young generation's collection threshold of a serving process (CPython's default: 700). A
# thousand records in flight hold tens of thousands of live objects; at 700 net allocations the
# collector ran every few records, each time walking in-flight objects that then survive into the
# older generations and are walked again there: a fifth of the service's CPU in ``make bench``.
# Refcounting frees nearly all garbage at once; only reference cycles wait for a collection.
_GC_THRESHOLD_0 = 20_000


async def _serve(settings: Settings, policy: PolicyStore) -> int:
    import gc

    from consumer.telemetry.tracing import configure_tracing, shutdown_tracing

    gc.set_threshold(_GC_THRESHOLD_0, *gc.get_threshold()[1:])
    if configure_tracing():  # OTEL_* variables: on only with an OTLP endpoint
        logging.getLogger("consumer").info("tracing on: spans exported over OTLP/HTTP")
    try:
        return await _serve_until_stopped(settings, policy)
    finally:
        shutdown_tracing()


async def _serve_until_stopped(settings: Settings, policy: PolicyStore) -> int:
    from consumer.service import ModerationService
    from consumer.wiring import provider_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with provider_client(settings) as http:
        service = ModerationService(settings, http, policy=policy)
        try:
            await service.run(stop)
        except Exception as exc:
            logging.getLogger("consumer").error(
                "service stopped on an error: %s: %s", type(exc).__name__, exc
            )
            return 1
    logging.getLogger("consumer").info("stopped", extra={"processed": service.processed})
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from simulator import DEFAULT_KEYS, LatencyModel, SimulatorState, serve
    from simulator.common import HOSTILE_FAULT_NAMES
    from simulator.state import DEFAULT_HUAWEI_TOKEN, StartupSettings

    keys = dict(DEFAULT_KEYS)
    for item in args.key:
        project, sep, key = item.partition("=")
        if not sep or project not in DEFAULT_KEYS or not key:
            raise ConfigError("--key", f"expected PROJECT=KEY with PROJECT one of {', '.join(DEFAULT_KEYS)}")
        keys[project] = key
    faults: dict[str, float] = {}
    hostile_faults: dict[str, float] = {}
    for item in args.fault:
        name, _, rate = item.partition("=")
        try:
            value = float(rate)
        except ValueError:
            raise ConfigError("--fault", f"expected NAME=RATE with RATE a number, got {item!r}") from None
        if name in HOSTILE_FAULT_NAMES and not 0.0 <= value <= 1.0:
            raise ConfigError("--fault", f"fault rate for {name} must be within 0..1")
        (hostile_faults if name in HOSTILE_FAULT_NAMES else faults)[name] = value
    if args.hostile_port is not None and not 0 <= args.hostile_port <= 65535:
        raise ConfigError("--hostile-port", "must be a port number (0 = a free one)")
    startup = StartupSettings(faults=faults, hang_s=args.hang_s, rate_limit=args.rate_limit, seed=args.seed)
    try:
        state = SimulatorState(
            keys,
            LatencyModel(args.latency_median_ms, args.latency_p99_ms),
            huawei_token=args.huawei_token or DEFAULT_HUAWEI_TOKEN,
            startup=startup,
        )
    except ValueError as exc:
        raise ConfigError("--fault", str(exc)) from None
    print(f"simulator listening on http://{args.host}:{args.port}", flush=True)
    if args.hostile_port is not None:
        where = f"http://127.0.0.1:{args.hostile_port}" if args.hostile_port else "a free port"
        print(f"hostile server listening on {where} (GET /_admin/hostile)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                args.host,
                args.port,
                state,
                allow_remote_fetch=args.allow_remote_fetch,
                hostile_port=args.hostile_port,
                hostile_faults=hostile_faults,
            )
        )
    return 0


def _broker(args: argparse.Namespace) -> int:
    from devtools.broker import BrokerError, LocalKafka

    try:
        if args.action == "start":
            kafka = LocalKafka(args.dir.resolve(), port=args.port)
            print(kafka.start(), flush=True)
        else:
            LocalKafka.attach(args.dir.resolve()).stop()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
