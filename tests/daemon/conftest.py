"""Fixtures for the daemon tests: real `wfed` processes on the test databases.

Each test gets its own queue, so the daemons of one test never see another test's
workflows even though a backend's database is shared by the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import STEP_MODULES, TESTS_DIR, WFED, DaemonFactory, DaemonProcess

from wfed import Engine


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own."""
    return f"q-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """The file the test steps append their lines to."""
    path = tmp_path / "journal.txt"
    path.touch()
    return path


@pytest.fixture
def schema(database_url: str, upgrade_schema: Callable[[str], None]) -> str:
    """The backend's test database with the wfed schema (upgraded once per session)."""
    upgrade_schema(database_url)
    return database_url


@pytest.fixture
def schema_mariadb(mariadb_url: str, upgrade_schema: Callable[[str], None]) -> str:
    """The MariaDB test database with the wfed schema."""
    upgrade_schema(mariadb_url)
    return mariadb_url


@pytest.fixture
def schema_postgresql(postgresql_url: str, upgrade_schema: Callable[[str], None]) -> str:
    """The PostgreSQL test database with the wfed schema."""
    upgrade_schema(postgresql_url)
    return postgresql_url


@pytest.fixture
def schema_sqlite(sqlite_url: str, upgrade_schema: Callable[[str], None]) -> str:
    """The SQLite test database with the wfed schema."""
    upgrade_schema(sqlite_url)
    return sqlite_url


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start `wfed` processes; every one still running is killed after the test."""
    started: list[DaemonProcess] = []

    def start(
        url: str,
        *,
        queue: str,
        lease: float = 2.0,
        poll_interval: float = 0.1,
        control_interval: float = 0.2,
        max_workflows: int = 16,
        shutdown_grace: float = 10.0,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        extra_config: str = "",
    ) -> DaemonProcess:
        number = len(started)
        config = tmp_path / f"wfed-{number}.toml"
        config.write_text(
            "\n".join(
                [
                    "[database]",
                    f"url = {json.dumps(url)}",
                    "[daemon]",
                    f"queues = [{json.dumps(queue)}]",
                    f"lease = {lease}",
                    f"poll_interval = {poll_interval}",
                    f"control_interval = {control_interval}",
                    f"max_workflows = {max_workflows}",
                    f"shutdown_grace = {shutdown_grace}",
                    "[steps]",
                    f"modules = {json.dumps(STEP_MODULES)}",
                    "[log]",
                    'format = "json"',
                    'level = "info"',
                ]
            )
            + "\n"
            + extra_config
        )
        log_path = tmp_path / f"wfed-{number}.log"
        process_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        process_env.pop("WFED_DATABASE_URL", None)
        process_env.pop("WFED_CONFIG", None)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [WFED, "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=process_env,
                start_new_session=True,
            )
        daemon = DaemonProcess(proc, log_path, config)
        started.append(daemon)
        if wait_ready:
            daemon.wait_for_log("daemon_started")
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def engine(schema: str, make_engine: Callable[..., Engine]) -> Engine:
    """An Engine on the test database with the test steps, for setting up and checking."""
    return make_engine(schema, step_modules=STEP_MODULES)
