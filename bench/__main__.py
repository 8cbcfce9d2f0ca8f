"""`python -m bench [--only mariadb,postgresql,sqlite] [--quick] [--workloads floor,throughput]`.

`--workloads` also takes `default` (every workload but the opt-in ones) and `all`, so that
`--workloads default,fleet` is the full run plus the fleet."""

from __future__ import annotations

import argparse
import logging
import sys

from bench.context import DEFAULT_WORKLOADS, WORKLOADS, Sizes
from bench.databases import BACKENDS
from bench.run import main, rerender


def _backends(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(unknown) or '(none)'}; choose from {', '.join(BACKENDS)}"
        )
    return [name for name in BACKENDS if name in chosen]


_GROUPS = {"default": DEFAULT_WORKLOADS, "all": WORKLOADS}


def _workloads(text: str) -> frozenset[str]:
    chosen: set[str] = set()
    for part in (part.strip() for part in text.split(",")):
        if part:
            chosen.update(_GROUPS.get(part, (part,)))
    unknown = sorted(chosen - set(WORKLOADS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(WORKLOADS)}, or default, all"
        )
    return frozenset(chosen)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark wfed on MariaDB, PostgreSQL and SQLite; write bench/RESULTS.md.",
        epilog="Servers: WFED_BENCH_MARIADB_URL (default mysql+asyncmy://root@127.0.0.1:3306/), "
        "WFED_BENCH_POSTGRESQL_URL (default postgresql+asyncpg://root@127.0.0.1:5432/postgres).",
    )
    parser.add_argument(
        "--only",
        type=_backends,
        default=list(BACKENDS),
        metavar="BACKENDS",
        help="comma-separated: mariadb,postgresql,sqlite (default: all three)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a smoke run of about a minute (written to bench/out/)",
    )
    parser.add_argument(
        "--workloads",
        type=_workloads,
        default=frozenset(DEFAULT_WORKLOADS),
        metavar="NAMES",
        help=f"comma-separated subset of: {','.join(WORKLOADS)}; or default (all but "
        "fleet and ten_thousand, which run only when named), all. Fewer than the default "
        "are written to bench/out/",
    )
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="run nothing: rewrite bench/RESULTS.md from bench/results.json",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    # The drivers log server notes (e.g. "Unknown table" on DROP IF EXISTS) as warnings.
    logging.basicConfig(level=logging.ERROR)
    if args.rerender:
        sys.exit(rerender())
    sizes = Sizes.quick() if args.quick else Sizes()
    sys.exit(main(args.only, sizes, args.quick, args.workloads))
