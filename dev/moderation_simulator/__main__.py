"""``python -m moderation_simulator``: serve the provider simulator (development only; the product's
command line does not know it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from moderation_simulator import DEFAULT_KEYS, LatencyModel, SimulatorState, serve
from moderation_simulator.common import HOSTILE_FAULT_NAMES
from moderation_simulator.state import DEFAULT_HUAWEI_TOKEN, StartupSettings

__all__ = ["main", "parser"]


class _OptionError(ValueError):
    """An option's value is unusable: one line, exit code 2."""


def parser() -> argparse.ArgumentParser:
    sim = argparse.ArgumentParser(prog="python -m moderation_simulator", description=__doc__)
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
    return sim


def _state(args: argparse.Namespace) -> tuple[SimulatorState, dict[str, float]]:
    keys = dict(DEFAULT_KEYS)
    for item in args.key:
        project, sep, key = item.partition("=")
        if not sep or project not in DEFAULT_KEYS or not key:
            raise _OptionError(f"--key: expected PROJECT=KEY with PROJECT one of {', '.join(DEFAULT_KEYS)}")
        keys[project] = key
    faults: dict[str, float] = {}
    hostile_faults: dict[str, float] = {}
    for item in args.fault:
        name, _, rate = item.partition("=")
        try:
            value = float(rate)
        except ValueError:
            raise _OptionError(f"--fault: expected NAME=RATE with RATE a number, got {item!r}") from None
        if name in HOSTILE_FAULT_NAMES and not 0.0 <= value <= 1.0:
            raise _OptionError(f"--fault: fault rate for {name} must be within 0..1")
        (hostile_faults if name in HOSTILE_FAULT_NAMES else faults)[name] = value
    if args.hostile_port is not None and not 0 <= args.hostile_port <= 65535:
        raise _OptionError("--hostile-port: must be a port number (0 = a free one)")
    startup = StartupSettings(faults=faults, hang_s=args.hang_s, rate_limit=args.rate_limit, seed=args.seed)
    try:
        state = SimulatorState(
            keys,
            LatencyModel(args.latency_median_ms, args.latency_p99_ms),
            huawei_token=args.huawei_token or DEFAULT_HUAWEI_TOKEN,
            startup=startup,
        )
    except ValueError as exc:
        raise _OptionError(f"--fault: {exc}") from None
    return state, hostile_faults


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        state, hostile_faults = _state(args)
    except _OptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
