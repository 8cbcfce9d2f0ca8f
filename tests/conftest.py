"""Database fixtures shared by the whole wfed test suite.

Three backends are supported: ``sqlite`` (aiosqlite, a file in a session temp dir),
``mariadb`` (asyncmy) and ``postgresql`` (asyncpg).

For MariaDB and PostgreSQL, ONE fresh database named ``wfed_test_<8 hex>`` is created
per backend per test session, the first time a test needs that backend, and dropped
when the session ends (whether tests passed or not). The servers are given by:

* ``WFED_TEST_MARIADB_URL``    (default ``mysql+asyncmy://root@127.0.0.1:3306/``)
* ``WFED_TEST_POSTGRESQL_URL`` (default ``postgresql+asyncpg://root@127.0.0.1:5432/test``)

The admin user of each URL must be allowed to CREATE and DROP databases.

If a server cannot be reached, the tests that need it are skipped with a loud reason,
unless the environment variable ``CI`` is non-empty: then they error instead.

Fixtures for tests:

* ``database_url``: parametrized over the three backends (ids ``sqlite``, ``mariadb``,
  ``postgresql``); the async SQLAlchemy URL string of that backend's test database.
* ``sqlite_url`` / ``mariadb_url`` / ``postgresql_url``: the same URL for a single backend,
  for tests that only make sense there.

Each test is also marked ``sqlite`` / ``mariadb`` / ``postgresql`` by the backend it uses
(``-m "not mariadb"`` deselects), and the terminal summary ends with a count of
passed/failed/skipped tests per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Final, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from wfed import Engine
from wfed.store.database import Database
from wfed.store.migrate import upgrade

_T = TypeVar("_T")

# The step modules are importable as `stepmods.…` (tests/stepmods/): made sure of here, so
# that the name does not depend on pytest's import mode.
TESTS_DIR: Final = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

BACKENDS: Final = ("sqlite", "mariadb", "postgresql")
TEST_DATABASE_PREFIX: Final = "wfed_test_"

_DEFAULT_SERVER_URLS: Final = {
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/",
    "postgresql": "postgresql+asyncpg://root@127.0.0.1:5432/test",
}
_SERVER_URL_ENV: Final = {
    "mariadb": "WFED_TEST_MARIADB_URL",
    "postgresql": "WFED_TEST_POSTGRESQL_URL",
}
_DEFAULT_PORTS: Final = {"mariadb": 3306, "postgresql": 5432}
_LABELS: Final = {"sqlite": "SQLite", "mariadb": "MariaDB", "postgresql": "PostgreSQL"}
_TEST_DATABASE_NAME_RE: Final = re.compile(r"wfed_test_[0-9a-f]{8}\Z")

# Driver connect timeout, and the overall limit for connecting + SELECT 1 (asyncmy's
# connect_timeout does not cover a server that accepts but never greets).
CONNECT_TIMEOUT_S: Final = 5
PROBE_TIMEOUT_S: Final = 10
# Upper bound for one CREATE/DROP statement round, so a wedged server cannot hang
# the session until pytest-timeout's limit.
ADMIN_TIMEOUT_S: Final = 60
# MariaDB: how long DROP DATABASE may wait for metadata locks after the
# connections using the database were killed.
_MARIADB_LOCK_WAIT_S: Final = 20


def ci_enabled() -> bool:
    """Whether an unreachable database server must fail tests (env CI non-empty)."""
    return bool(os.environ.get("CI"))


def server_url(backend: str) -> URL:
    """The admin URL of a server backend, from its environment variable or default."""
    return make_url(os.environ.get(_SERVER_URL_ENV[backend]) or _DEFAULT_SERVER_URLS[backend])


class ServerUnreachableError(Exception):
    """Connecting to a database server (and running SELECT 1) failed."""


def _describe_error(exc: BaseException) -> str:
    """One line naming the root cause of a driver/SQLAlchemy error."""
    cause: BaseException = exc
    if isinstance(cause, DBAPIError) and cause.orig is not None:
        cause = cause.orig
    message = " ".join(str(cause).split()) or "no message"
    return f"{type(cause).__name__}: {message}"


def _run_on_private_loop(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``factory()`` to completion on a fresh event loop in a helper thread.

    This keeps the sync session fixtures independent of pytest-asyncio's loops: it
    works whether or not the calling thread is already running an event loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wfed-test-db") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _connect_args(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "mysql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    if url.get_backend_name() == "postgresql":
        return {"timeout": CONNECT_TIMEOUT_S}
    return {}


def _create_sql(backend: str, name: str) -> str:
    if backend == "mariadb":
        return f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
    return f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"


async def _admin_session(
    admin_url: URL, work: Callable[[AsyncConnection], Coroutine[Any, Any, None]]
) -> None:
    """Connect to a server in AUTOCOMMIT mode, check SELECT 1, then run ``work``.

    Raises ServerUnreachableError if the connection or SELECT 1 fails; errors
    raised by ``work`` propagate unchanged. The engine is always disposed.
    """
    engine = create_async_engine(
        admin_url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args=_connect_args(admin_url),
    )
    try:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                conn = await engine.connect()
        except TimeoutError as exc:
            raise ServerUnreachableError(f"no answer within {PROBE_TIMEOUT_S} s") from exc
        except (OSError, DBAPIError) as exc:
            raise ServerUnreachableError(_describe_error(exc)) from exc
        try:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await conn.execute(text("SELECT 1"))
            except TimeoutError as exc:
                raise ServerUnreachableError(f"no answer within {PROBE_TIMEOUT_S} s") from exc
            except (OSError, DBAPIError) as exc:
                raise ServerUnreachableError(_describe_error(exc)) from exc
            async with asyncio.timeout(ADMIN_TIMEOUT_S):
                await work(conn)
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def _drop_mariadb_database(conn: AsyncConnection, name: str) -> None:
    """Kill the connections still using the database, then drop it (like PG's FORCE)."""
    await conn.execute(text(f"SET SESSION lock_wait_timeout = {_MARIADB_LOCK_WAIT_S}"))
    rows = await conn.execute(
        text(
            "SELECT id FROM information_schema.processlist"
            " WHERE db = :name AND id <> CONNECTION_ID()"
        ),
        {"name": name},
    )
    for (connection_id,) in rows.all():
        with contextlib.suppress(DBAPIError):  # it may have ended in the meantime
            await conn.execute(text(f"KILL CONNECTION {int(connection_id)}"))
    await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


async def _drop_postgresql_database(conn: AsyncConnection, name: str) -> None:
    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class TestDatabaseRegistry:
    """Lazily creates, hands out and finally drops the per-session test databases.

    ``url(backend)`` creates the backend's database on first use and caches the
    result; a server found unreachable is remembered too, so each server is probed
    at most once per session.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, sqlite_dir: Path) -> None:
        self._sqlite_dir = sqlite_dir
        self._urls: dict[str, str] = {}
        self._unusable: dict[str, tuple[bool, str]] = {}  # backend -> (skip?, reason)
        self._created: dict[str, tuple[URL, str]] = {}  # backend -> (admin URL, db name)

    def url(self, backend: str) -> str:
        """The async SQLAlchemy URL of ``backend``'s test database (skip/fail if unusable)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown database backend {backend!r}; expected one of {BACKENDS}")
        if backend not in self._urls and backend not in self._unusable:
            self._set_up(backend)
        if backend in self._unusable:
            skip, reason = self._unusable[backend]
            if skip:
                pytest.skip(reason)
            pytest.fail(reason, pytrace=False)
        return self._urls[backend]

    def database_names(self) -> dict[str, str]:
        """The server databases created so far, by backend."""
        return {backend: name for backend, (_, name) in self._created.items()}

    def _set_up(self, backend: str) -> None:
        if backend == "sqlite":
            path = self._sqlite_dir / "wfed.db"
            self._urls[backend] = URL.create(
                "sqlite+aiosqlite", database=str(path)
            ).render_as_string()
            return

        admin_url = server_url(backend)
        label = _LABELS[backend]
        where = f"{admin_url.host or 'localhost'}:{admin_url.port or _DEFAULT_PORTS[backend]}"
        name = f"{TEST_DATABASE_PREFIX}{secrets.token_hex(4)}"
        create_sql = _create_sql(backend, name)

        async def create(conn: AsyncConnection) -> None:
            await conn.execute(text(create_sql))

        try:
            _run_on_private_loop(lambda: _admin_session(admin_url, create))
        except ServerUnreachableError as exc:
            if ci_enabled():
                reason = (
                    f"{label} at {where} unreachable ({exc}) and CI is set: "
                    f"failing {label} tests (start the server, or check {_SERVER_URL_ENV[backend]})"
                )
                self._unusable[backend] = (False, reason)
            else:
                reason = (
                    f"{label} at {where} unreachable ({exc}): skipping {label} tests; "
                    "set CI=1 to make this a failure"
                )
                self._unusable[backend] = (True, reason)
            return
        except Exception as exc:  # reachable, but the test database could not be created
            self._unusable[backend] = (
                False,
                f"{label} at {where}: could not create test database {name} "
                f"({_describe_error(exc)}); does {admin_url.username!r} have CREATE privilege?",
            )
            return

        self._created[backend] = (admin_url, name)
        self._urls[backend] = admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        """Drop every database this registry created; raise if any drop failed."""
        failures: list[str] = []
        while self._created:
            backend, (admin_url, name) = self._created.popitem()
            try:
                _drop_database(backend, admin_url, name)
            except Exception as exc:
                failures.append(
                    f"{_LABELS[backend]}: could not drop test database {name}: "
                    f"{_describe_error(exc)}"
                )
        if failures:
            raise RuntimeError("; ".join(failures))


def _drop_database(backend: str, admin_url: URL, name: str) -> None:
    """Drop one test database (only ever a ``wfed_test_<8 hex>`` name)."""
    if not _TEST_DATABASE_NAME_RE.match(name):
        raise ValueError(f"refusing to drop {name!r}: not a wfed test database name")
    drop = _drop_mariadb_database if backend == "mariadb" else _drop_postgresql_database

    async def work(conn: AsyncConnection) -> None:
        await drop(conn, name)

    _run_on_private_loop(lambda: _admin_session(admin_url, work))


@pytest.fixture(scope="session")
def wfed_test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabaseRegistry]:
    """The session's TestDatabaseRegistry: creates each backend's test database on first
    use and drops all of them when the session ends, even if tests failed."""
    registry = TestDatabaseRegistry(tmp_path_factory.mktemp("wfed-sqlite"))
    try:
        yield registry
    finally:
        registry.drop_all()


@pytest.fixture(scope="session", params=BACKENDS, ids=BACKENDS)
def database_url(request: pytest.FixtureRequest, wfed_test_databases: TestDatabaseRegistry) -> str:
    """Async SQLAlchemy URL of the per-session test database, once per backend.

    Parametrized with ids ``sqlite``, ``mariadb``, ``postgresql``; e.g.
    ``mysql+asyncmy://root@127.0.0.1:3306/wfed_test_ab12cd34``. Shares its database
    with ``sqlite_url`` / ``mariadb_url`` / ``postgresql_url``. The database lives for
    the whole session: tests must not assume it is empty.
    """
    backend: str = request.param
    return wfed_test_databases.url(backend)


@pytest.fixture(scope="session")
def sqlite_url(wfed_test_databases: TestDatabaseRegistry) -> str:
    """Async URL (``sqlite+aiosqlite:////…/wfed.db``) of the session's SQLite test file."""
    return wfed_test_databases.url("sqlite")


@pytest.fixture(scope="session")
def mariadb_url(wfed_test_databases: TestDatabaseRegistry) -> str:
    """Async URL (``mysql+asyncmy://…/wfed_test_<hex>``) of the session's MariaDB test
    database; skips (or fails when CI is set) if MariaDB is unreachable."""
    return wfed_test_databases.url("mariadb")


@pytest.fixture(scope="session")
def postgresql_url(wfed_test_databases: TestDatabaseRegistry) -> str:
    """Async URL (``postgresql+asyncpg://…/wfed_test_<hex>``) of the session's PostgreSQL
    test database; skips (or fails when CI is set) if PostgreSQL is unreachable."""
    return wfed_test_databases.url("postgresql")


# --- the wfed schema, and Engines on it ----------------------------------------------

_upgraded: set[str] = set()
_upgrade_lock = threading.Lock()

EngineFactory = Callable[..., Engine]


def ensure_schema(url: str) -> None:
    """Upgrade the schema of `url` once per session (upgrade is idempotent, but slow-ish).

    It runs on a private event loop in a helper thread, so it works from sync and async
    code alike and leaves no pool bound to a test's loop.
    """
    with _upgrade_lock:
        if url in _upgraded:
            return

        async def work() -> None:
            db = Database(url)
            try:
                await upgrade(db)
            finally:
                await db.dispose()

        _run_on_private_loop(work)
        _upgraded.add(url)


@pytest.fixture(scope="session")
def upgrade_schema() -> Callable[[str], None]:
    """`upgrade_schema(url)`: the wfed schema on `url`, upgraded once per session."""
    return ensure_schema


@pytest.fixture
async def make_engine() -> AsyncIterator[EngineFactory]:
    """`make_engine(url, **options)`: an Engine on an upgraded database (actor
    `tester@host` unless given); all of them are closed after the test."""
    engines: list[Engine] = []

    def make(url: str, **options: Any) -> Engine:
        ensure_schema(url)
        options.setdefault("actor", "tester@host")
        engine = Engine(url, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


# --- per-backend markers and counts ------------------------------------------------

_BACKENDS_PROPERTY: Final = "wfed_backends"
_SUMMARY_OUTCOMES: Final = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def item_backends(item: pytest.Item) -> frozenset[str]:
    """Backends a test item runs against: by its ``database_url`` parameter, by the
    single-backend fixtures it uses, or by a backend name in its parameter id."""
    found: set[str] = set()
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        param = callspec.params.get("database_url")
        if param in BACKENDS:
            found.add(param)
        for part in callspec.id.split("-"):
            found.update(backend for backend in BACKENDS if part.startswith(backend))
    fixturenames = getattr(item, "fixturenames", ())
    found.update(backend for backend in BACKENDS if f"{backend}_url" in fixturenames)
    return frozenset(found)


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (e.g. from `timeout`) interrupts pytest like Ctrl-C, so session teardown
    still drops the test databases; a second SIGTERM kills at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt(f"pytest received signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # wfectl lays its tables out for $COLUMNS when set, and pytest-xdist sets it (80) in
    # its worker processes: the processes the tests start must see the same environment
    # however the suite is run.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    for backend in BACKENDS:
        config.addinivalue_line(
            "markers", f"{backend}: test uses the {_LABELS[backend]} backend (set by conftest)"
        )
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == _sigterm_as_interrupt
    ):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.hookimpl(tryfirst=True)  # before -m deselection sees the items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        backends = item_backends(item)
        # Carried by the test's reports, so the summary can count them in the process
        # that prints it (with pytest-xdist, not the one that collected the test).
        item.user_properties.append((_BACKENDS_PROPERTY, ",".join(sorted(backends))))
        for backend in sorted(backends):
            item.add_marker(backend)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print how many tests ran per backend (numbers for the release notes)."""
    counts: dict[str, Counter[str]] = {backend: Counter() for backend in BACKENDS}
    for outcome in _SUMMARY_OUTCOMES:
        backends_of = {
            getattr(report, "nodeid", ""): dict(getattr(report, "user_properties", ())).get(
                _BACKENDS_PROPERTY, ""
            )
            for report in terminalreporter.stats.get(outcome, [])
        }
        for backends in backends_of.values():
            for backend in filter(None, backends.split(",")):
                counts[backend][outcome] += 1
    if not any(counts.values()):
        return
    terminalreporter.write_sep("=", "wfed tests per database backend")
    for backend in BACKENDS:
        tally = counts[backend]
        parts = [f"{outcome}={tally[outcome]}" for outcome in _SUMMARY_OUTCOMES[:4]]
        parts += [
            f"{outcome}={tally[outcome]}" for outcome in _SUMMARY_OUTCOMES[4:] if tally[outcome]
        ]
        terminalreporter.write_line(f"{backend:<11} " + " ".join(parts))
