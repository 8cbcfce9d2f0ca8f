"""Fixtures of the fault-injection tier: real `wfed` processes, real servers, faults from
outside.

The daemon fixtures are those of `tests/daemon/conftest.py` (loaded from there, not
copied); this file adds a MariaDB server of the tier's own (its own datadir and port: it
is killed and restarted, and its globals are changed), a fresh database on it per test,
and the figures each test measured, printed at the end of the run.

`WFED_CHAOS_SCALE=full` (set by `make chaos`) runs every test at full scale; the default,
`reduced`, is the scale `make test` runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHAOS_DIR = Path(__file__).resolve().parent
TESTS_DIR = CHAOS_DIR.parent
DAEMON_TESTS_DIR = TESTS_DIR / "daemon"
# The daemon tests' helpers (`daemon_harness`, `private_mariadb`) are imported by their
# plain names, as the daemon tests themselves do.
for directory in (DAEMON_TESTS_DIR, CHAOS_DIR):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


def _load_daemon_fixtures() -> Any:
    spec = importlib.util.spec_from_file_location(
        "wfed_daemon_test_fixtures", DAEMON_TESTS_DIR / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_daemon_fixtures = _load_daemon_fixtures()
# The daemon tests' fixtures, shared as they are: `start_daemon` (wfed processes, killed
# after the test), `journal`, `queue`, and the backends with the wfed schema.
start_daemon = _daemon_fixtures.start_daemon
journal = _daemon_fixtures.journal
queue = _daemon_fixtures.queue
schema = _daemon_fixtures.schema
schema_postgresql = _daemon_fixtures.schema_postgresql
schema_sqlite = _daemon_fixtures.schema_sqlite

from harness import FIGURES, SCALE  # noqa: E402 - needs the paths above
from private_mariadb import PrivateMariaDB, available  # noqa: E402


@pytest.fixture(scope="session")
def chaos_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    """A MariaDB server of the tier's own, for the whole session: tests kill and restart
    it, and change its globals (each restores what it changed)."""
    reason = available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"private MariaDB needed in CI: {reason}")
        pytest.skip(f"private MariaDB unavailable: {reason}")
    server = PrivateMariaDB(tmp_path_factory.mktemp("chaos-mariadb"))
    server.install()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()


@pytest.fixture
def private_mariadb_url(
    chaos_mariadb: PrivateMariaDB, upgrade_schema: Callable[[str], None]
) -> str:
    """A fresh database on the tier's MariaDB, with the wfed schema."""
    if chaos_mariadb.process is None or chaos_mariadb.process.poll() is not None:
        chaos_mariadb.start()  # a test that killed it did not get to restart it
    name = f"chaos_{uuid.uuid4().hex[:10]}"
    chaos_mariadb.sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = chaos_mariadb.url.rsplit("/", 1)[0] + f"/{name}"
    upgrade_schema(url)
    return url


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`figures(key=value, …)`: record what the test measured, for the run's summary
    (and `WFED_CHAOS_REPORT`, a JSON-lines file, when set)."""

    def record(**values: Any) -> None:
        entry = {"test": request.node.nodeid, "scale": SCALE, **values}
        FIGURES.append(entry)
        report = os.environ.get("WFED_CHAOS_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry, default=str) + "\n")

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not FIGURES:
        return
    terminalreporter.write_sep("=", f"wfed chaos figures (scale {SCALE})")
    for entry in FIGURES:
        name = entry["test"].split("::", 1)[-1]
        values = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in {"test", "scale"})
        terminalreporter.write_line(f"{name}: {values}")


@pytest.fixture
def backend_url(request: pytest.FixtureRequest) -> str:
    """The URL of the backend named by the test's `backend_url` parameter: MariaDB is the
    tier's own server (a fresh database per test), PostgreSQL and SQLite the session's
    test databases (each test has a queue of its own there)."""
    backend: str = request.param
    if backend == "mariadb":
        url: str = request.getfixturevalue("private_mariadb_url")
        return url
    return str(request.getfixturevalue(f"schema_{backend}"))
