"""``moderation-consumer <command>`` (or ``python -m consumer``): run | dlq replay | schemas | policy.
The simulator, the demo and the local broker are development tools outside the product
(``python -m moderation_simulator``, ``make demo``, ``python -m moderation_devtools.broker``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from consumer import __version__
from consumer.errors import (
    BrokerError,
    ConfigError,
    ExchangeRefused,
    ModerationError,
    PermanentError,
    SerializationError,
    ToolError,
    TransientError,
    UnreadableFile,
)
from consumer.runtime.workers import Worker

if TYPE_CHECKING:
    from consumer.config import Settings
    from consumer.policy.tenants import PolicyStore

__all__ = ["EXIT_CODES", "exit_code", "main"]

# Each branch of the error tree (consumer.errors) -> the exit code of a command it stops; the
# nearest listed ancestor of an error decides. Kept in step with _EPILOG (a unit test checks both).
EXIT_CODES: dict[type[ModerationError], int] = {
    ModerationError: 1,
    ConfigError: 2,
    UnreadableFile: 2,
    SerializationError: 1,
    TransientError: 3,
    PermanentError: 1,
    ExchangeRefused: 1,
    BrokerError: 1,
    ToolError: 1,
}

_EPILOG = """exit codes:
  0  done
  1  a check said no (policy check: an invalid file; schemas: an incompatible schema), or the
     command stopped on an error: ToolError, BrokerError, ExchangeRefused, SerializationError,
     PermanentError (run: the service stopped on any error)
  2  invalid settings or options (ConfigError, UnreadableFile)
  3  a service the command needs cannot be reached (TransientError; schemas: the registry)"""


def exit_code(exc: ModerationError) -> int:
    """The exit code of a command stopped by ``exc`` (see ``EXIT_CODES``)."""
    for kind in type(exc).__mro__:
        code = EXIT_CODES.get(kind)
        if code is not None:
            return code
    return 1


def _program() -> str:
    """The name the user typed: the installed script, or ``python -m consumer``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m consumer" if name in ("", "__main__.py", "-c") else name


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not least <= value <= 4096:
            raise argparse.ArgumentTypeError(f"{value} is not between {least} and 4096")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_program(),
        description="Streaming upload moderation: Kafka uploads in, one Avro verdict out.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,dlq,schemas,policy}")

    run = sub.add_parser("run", help="consume uploads and produce verdicts until SIGTERM")
    run.add_argument("--config", type=Path, help="YAML settings file (env MODERATION_CONFIG)")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes in one consumer group under a supervisor (e.g. one per core)",
    )
    # a worker's place, given by the supervisor on the worker's command line (runtime.supervisor)
    run.add_argument("--worker-index", type=_count(0), default=0, help=argparse.SUPPRESS)
    run.add_argument("--worker-count", type=_count(1), default=1, help=argparse.SUPPRESS)
    run.add_argument("--workers-dir", type=Path, default=None, help=argparse.SUPPRESS)

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

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(
                args.config, args.workers, Worker(args.worker_index, args.worker_count, args.workers_dir)
            )
        if args.command == "dlq":
            return _replay(args)
        if args.command == "schemas":
            return _schemas(args)
        return _policy(args)
    except ModerationError as exc:
        return _error(exc)
    except ValueError as exc:  # defence in depth: a settings error that escaped load_settings
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        from consumer.config import config_error_from

        if not isinstance(exc, ValidationError | SettingsError):
            raise
        return _error(config_error_from(exc))


def _error(exc: ModerationError) -> int:
    """One line on stderr (never a value or file contents); the exit code of the error's branch."""
    line = " ".join("".join(c for c in str(exc) if c.isprintable() or c.isspace()).split())
    print(f"error: {line}", file=sys.stderr)
    return exit_code(exc)


def _replay(args: argparse.Namespace) -> int:
    from consumer.config import load_settings
    from consumer.delivery.replay import Selection, replay

    settings = load_settings(args.config)
    try:
        selection = Selection(args.partition, args.from_offset, args.to_offset, frozenset(args.error_class))
    except ValueError as exc:
        raise ConfigError("--from-offset/--to-offset", str(exc)) from None
    summary = replay(settings, selection, dry_run=args.dry_run, to_topic=args.to_topic, echo=print)
    print(summary.table())
    return 0


def _policy(args: argparse.Namespace) -> int:
    from consumer.checks.builtin import default_registry
    from consumer.cli import policy as tools
    from consumer.policy.backtest import VerdictRange, read_verdict_file, read_verdict_topic

    registry = default_registry()
    if args.policy_command == "check":
        try:
            return tools.check_policy_file(args.file, registry)
        except ConfigError as exc:
            _error(exc)
            return 1  # an invalid policy is this command's "no", not a bad invocation
    if args.input is not None:
        verdicts = read_verdict_file(args.input)
    else:
        from consumer.config import load_settings

        since = None if args.since is None else tools.parse_time(args.since, "--since")
        until = None if args.until is None else tools.parse_time(args.until, "--until")
        chosen = VerdictRange(args.last, since, until, args.partition, args.from_offset, args.to_offset)
        verdicts = read_verdict_topic(load_settings(args.config), chosen, args.topic)
    tools.backtest(verdicts, args.candidate, registry, as_json=args.json, examples=max(0, args.examples))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from fastavro.schema import SchemaParseException

    from consumer.cli import schemas as schemas_admin
    from consumer.config import load_settings

    settings = load_settings(args.config)
    action = schemas_admin.register if args.action == "register" else schemas_admin.check
    try:
        return action(settings, schema_dir=args.schema_dir)
    except (SerializationError, SchemaParseException, ValueError, KeyError, OSError) as exc:
        raise ConfigError("--schema-dir", f"cannot read the schemas: {type(exc).__name__}: {exc}") from None


def _run(config: Path | None, workers: int = 1, worker: Worker | None = None) -> int:
    """``worker``: this process's place when the supervisor started it (``--worker-index`` ...)."""
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

        return uvloop.run(_serve(settings, policy, worker or Worker()))
    return asyncio.run(_serve(settings, policy, worker or Worker()))


# The young generation's collection threshold of a serving process (CPython's default: 700). A
# thousand records in flight hold tens of thousands of live objects; at 700 net allocations the
# collector ran every few records, each time walking in-flight objects that then survive into the
# older generations and are walked again there: a fifth of the service's CPU in ``make bench``.
# Refcounting frees nearly all garbage at once; only reference cycles wait for a collection.
_GC_THRESHOLD_0 = 20_000


async def _serve(settings: Settings, policy: PolicyStore, worker: Worker) -> int:
    import gc

    from consumer.telemetry.tracing import configure_tracing, shutdown_tracing

    gc.set_threshold(_GC_THRESHOLD_0, *gc.get_threshold()[1:])
    # OTEL_* variables (docs/tracing.md): on only with an OTLP endpoint
    if configure_tracing(process_span_parent=settings.tracing.process_span_parent):
        logging.getLogger("consumer").info("tracing on: spans exported over OTLP")
    try:
        return await _serve_until_stopped(settings, policy, worker)
    finally:
        shutdown_tracing()


def _freeze_startup_heap() -> None:
    """Modules, settings, schemas and clients live as long as the process: moved out of the
    collector's sight, a full collection walks only what serving allocates (without it, one walked
    a few hundred thousand startup objects: a pause of tens of ms in some verdict's latency)."""
    import gc

    gc.collect()
    gc.freeze()


async def _serve_until_stopped(settings: Settings, policy: PolicyStore, worker: Worker) -> int:
    from consumer.wiring import assembled, provider_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    processed = 0
    async with provider_client(settings) as http:
        try:
            async with assembled(settings, http, stop, worker=worker, policy=policy) as process:
                _freeze_startup_heap()
                try:
                    await process.run(stop)
                finally:
                    processed = process.processed
        except Exception as exc:
            logging.getLogger("consumer").error(
                "service stopped on an error: %s: %s", type(exc).__name__, exc
            )
            return 1
    logging.getLogger("consumer").info("stopped", extra={"processed": processed})
    return 0
