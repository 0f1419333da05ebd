"""Run the benchmarks: ``python -m bench [SUITE ...] [--quick] [--minutes M]`` (``make bench``).

Each suite is a module of this package with ``run(quick: bool) -> None`` that prints its
figures next to a baseline measured in the same run. ``--quick`` shortens every suite (CI);
``--minutes`` sets the length of the suites that run for a time (``soak``: one hour by default).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

SUITES = ("ingest", "metrics", "db_call", "vod", "chat", "soak", "delivery", "nodes")


def main() -> None:
    """Run the chosen suites (all by default) in order."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI mode)")
    parser.add_argument(
        "--minutes", type=float, help="length of the timed suites (soak: default 60, quick 3)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="delivery: run stagecast serve --workers N (on PostgreSQL and Redis)",
    )
    args = parser.parse_args()
    chosen = args.suites or list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                raise
            print(f"== {name}: not available yet", flush=True)
            continue
        print(f"== {name}", flush=True)
        options: dict[str, object] = {"quick": args.quick}
        if args.minutes is not None and "minutes" in inspect.signature(module.run).parameters:
            options["minutes"] = args.minutes
        if args.workers != 1 and "workers" in inspect.signature(module.run).parameters:
            options["workers"] = args.workers
        module.run(**options)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
