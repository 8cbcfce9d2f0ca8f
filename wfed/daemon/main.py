"""`wfed [--config PATH]`: run the daemon in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys

from wfed import __version__
from wfed.config import load_config
from wfed.daemon.supervisor import Daemon
from wfed.errors import WfedError
from wfed.logging import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfed",
        description="Run the wfed daemon: claim runnable workflows and run their steps.",
        epilog="Config also from WFED_CONFIG, the database URL from WFED_DATABASE_URL; "
        "without either, SQLite wfed.db in the working directory.",
    )
    parser.add_argument("-c", "--config", metavar="PATH", help="config file (TOML)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"wfed {__version__}")
        return 0
    try:
        config = load_config(args.config)
    except WfedError as exc:
        print(f"wfed: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log.level, config.log.format)

    try:
        asyncio.run(Daemon(config).run())
    except WfedError as exc:  # logged as daemon_failed by the daemon itself
        print(f"wfed: {exc}", file=sys.stderr)
        return 1
    except ExceptionGroup as group:  # a side loop crashed: logged with its traceback
        first = group.exceptions[0]
        print(f"wfed: stopped after an internal error: {first!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
