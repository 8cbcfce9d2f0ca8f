"""Running one command's engine calls, and turning every failure into one line.

Each command runs its engine calls in one `asyncio.run`, in an `Engine.session`: it
closes the engine, and turns database errors into the WfedError that says what they mean.
Before the first query the session's pre-flight check connects (within ten seconds) and
checks the schema revision, so an unreachable database or a missing schema is reported
plainly instead of as whatever the first query happens to hit.

wfectl imports what a command needs when it runs, not when the command is registered:
the engine, SQLAlchemy and the configuration's validation here, rich in `render` when
something is drawn, the step modules only when steps are validated. `wfectl --help`
imports none of them.
"""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, TypeVar

if TYPE_CHECKING:
    from wfed.config import Config
    from wfed.engine import Engine

T = TypeVar("T")

# Passwords seen in the configuration: never printed, whatever a driver puts in a message.
_SECRETS: set[str] = set()
_MIN_SECRET = 4
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/:@\s]*:)[^@\s/]+@")


@dataclass
class Settings:
    """What the global options set up for the commands (kept in the click context)."""

    config_path: str | None = None
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        """The configuration (`--config`, else WFED_CONFIG, else defaults), loaded once."""
        if self._config is None:
            from wfed.config import load_config

            self._config = load_config(self.config_path)
            _remember_secrets(self._config)
        return self._config


def _remember_secrets(config: Config) -> None:
    from wfed.engine import Engine

    for password in (Engine.url_password(config.database.url), config.database_password()):
        if password:
            _SECRETS.add(password)


def scrub(message: str) -> str:
    """A message as it may be printed: one line, with no password in it."""
    message = _URL_PASSWORD.sub(r"\1***@", message)
    for secret in _SECRETS:
        if len(secret) >= _MIN_SECRET:  # replacing "b" everywhere would garble the text
            message = message.replace(secret, "***")
    return " ".join(message.split())


def fail(message: str) -> NoReturn:
    """Print `wfectl: <message>` on stderr and exit with code 1."""
    sys.stdout.flush()
    sys.stderr.write(f"wfectl: {scrub(message)}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def run_engine(
    settings: Settings,
    work: Callable[[Engine], Awaitable[T]],
    *,
    connect: bool = True,
    schema: bool = True,
) -> T:
    """Build the engine from the configuration, run `work` with it, close it.

    `connect=False` skips the pre-flight check (commands that only need the step
    registry); `schema=False` checks the connection but not the schema (`db upgrade`).
    Every failure of the database comes out as a WfedError.
    """
    import asyncio
    import logging

    from wfed.engine import Engine

    # wfed's own lines below a warning go nowhere unless logging is configured (and
    # structlog is then never imported); the MySQL driver logs server notes as warnings.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    engine = Engine.from_config(config=settings.config())
    _collect_garbage_again()

    async def main() -> T:
        async with engine.session(check=connect, schema=schema):
            return await work(engine)

    with asyncio.Runner() as runner:
        try:
            return runner.run(main())
        finally:
            runner.run(_settle_sqlite_threads())


def _collect_garbage_again() -> None:
    """Switch the garbage collector on again if the entry point switched it off for the
    imports (`main`), freezing what they made: it lives as long as the process, and a
    collection need never walk it."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


_AIOSQLITE_THREAD = "(_connection_worker_thread)"
_SETTLE_SECONDS = 1.0


async def _settle_sqlite_threads() -> None:
    """Let aiosqlite's worker threads end while the event loop still runs.

    When opening a SQLite file fails, aiosqlite stops its worker thread without waiting
    for it, and the thread then reports back to the event loop; if `asyncio.run` has
    closed the loop by then, the thread prints a traceback (omnilib/aiosqlite#241).
    """
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_SECONDS
    for thread in threading.enumerate():
        if thread.name.endswith(_AIOSQLITE_THREAD) and thread.is_alive():
            await asyncio.to_thread(thread.join, max(deadline - loop.time(), 0))
