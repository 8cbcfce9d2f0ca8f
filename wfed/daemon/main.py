"""`wfed [--config PATH]`: run the daemon in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from typing import TYPE_CHECKING

from wfed import __version__
from wfed.errors import WfedError

if TYPE_CHECKING:
    from wfed.daemon.supervisor import Daemon


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


def _daemon(config_path: str | None) -> Daemon:
    """The daemon the configuration describes, its logging set up."""
    from wfed.config import load_config
    from wfed.daemon.supervisor import Daemon
    from wfed.logging import configure_logging

    config = load_config(config_path)
    configure_logging(config.log.level, config.log.format, per_loop_turn=True)
    return Daemon(config)


async def _serve(daemon: Daemon) -> None:
    """Run the daemon; once it has shut down, leave at once if a `def` step cut off by the
    shutdown still runs in its worker thread. Waiting for the thread (as the end of
    `asyncio.run` and the interpreter's exit would) keeps the step running long after
    its workflow was handed back, perhaps beside its re-run by another daemon, and turns
    a stop under systemd into a wait for the stop timeout and a SIGKILL."""
    from wfed.logging import flush_log, get_logger
    from wfed.steps import threads

    await daemon.run()
    cut_off = threads.running()
    if cut_off:
        get_logger("wfed.daemon").warning("step_threads_abandoned", threads=cut_off)
        flush_log()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"wfed {__version__}")
        return 0
    # Start-up imports several hundred modules (SQLAlchemy, the drivers, the step modules)
    # and the cyclic garbage collector would walk the growing heap again and again
    # meanwhile, for nothing: it is switched off until they are done, and what they made,
    # which lives as long as the daemon, is frozen out of every later collection.
    gc.disable()
    try:
        daemon = _daemon(args.config)
    except WfedError as exc:
        print(f"wfed: {exc}", file=sys.stderr)
        return 1
    finally:
        gc.freeze()
        gc.enable()
    try:
        asyncio.run(_serve(daemon))
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
