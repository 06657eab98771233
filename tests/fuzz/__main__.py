"""``python -m tests.fuzz TARGET [libFuzzer options] [corpus folders]``: fuzz one target here.
``python -m tests.fuzz --all [--seconds N] [--only T,...]``: each target as a subprocess for N
seconds (default ``$FUZZ_SECONDS`` or 60), learning into ``.local/fuzz/corpus/<target>``, crashes
into ``.local/fuzz/crashes/<target>``; exits 1 when any target crashed. ``--list`` names them."""

from __future__ import annotations

import argparse
import os
import sys

from tests.fuzz.runner import ROOT, fuzz_one, run
from tests.fuzz.targets import TARGETS


def main(argv: list[str]) -> int:
    if argv and argv[0] in TARGETS:
        fuzz_one(argv[0], argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--list", action="store_true", help="name the targets")
    parser.add_argument("--all", action="store_true", help="fuzz every target in turn")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--only", default="", help="comma-separated targets (with --all)")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if not args.all:
        parser.error(f"name a target ({', '.join(TARGETS)}) or pass --all")
    chosen = [t for t in args.only.split(",") if t] or list(TARGETS)
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    failed = []
    for target in chosen:
        local = ROOT / ".local" / "fuzz"
        outcome = run(target, args.seconds, local / "corpus" / target, local / "crashes" / target)
        print(outcome.summary(), flush=True)
        if not outcome.ok:
            failed.append(outcome)
            print("\n".join(outcome.output.splitlines()[-40:]), file=sys.stderr)
            for path in outcome.artifacts:
                print(
                    f"  crash input: {path} (copy it into tests/fuzz/regressions/{target}/)", file=sys.stderr
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
