"""Fixtures for running the real `wfectl` executable against the test databases.

`wfectl` is run as a subprocess (the console script of this virtualenv), with the database
given by `WFED_DATABASE_URL` and a config file listing the example steps. Independent
invocations can run concurrently (`Wfectl.many`): each one pays the interpreter start-up,
which dominates the suite's run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

WFECTL = Path(sys.executable).parent / "wfectl"
STEP_MODULES = ["wfed.examples"]
NO_DATABASE = "sqlite+aiosqlite:////nonexistent/wfectl-must-not-connect.db"
"""For commands that must not need a database: connecting to it would fail."""
TIMEOUT = 60


@dataclass(frozen=True)
class Result:
    """A finished `wfectl` process."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)


def _environment(url: str, config: Path | None, extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"WFED_CONFIG", "WFED_DATABASE_URL", "NO_COLOR", "FORCE_COLOR"}
        and not key.startswith("WFECTL_")
    }
    env["WFED_DATABASE_URL"] = url
    if config is not None:
        env["WFED_CONFIG"] = str(config)
    env.update(extra)
    return env


@dataclass(frozen=True)
class Wfectl:
    """Runs `wfectl` with one database URL (`WFED_DATABASE_URL`) and config file."""

    url: str
    config: Path | None
    env: tuple[tuple[str, str], ...] = ()

    def __call__(self, *args: str) -> Result:
        return self.many([args])[0]

    def many(self, invocations: Sequence[Sequence[str]]) -> list[Result]:
        """Run several invocations at once; results in the same order."""
        env = _environment(self.url, self.config, dict(self.env))
        processes = [
            (
                tuple(args),
                subprocess.Popen(
                    [str(WFECTL), *args],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for args in invocations
        ]
        results = []
        for args, process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            results.append(Result(args, process.returncode, out, err))
        return results

    def with_env(self, **extra: str) -> Wfectl:
        return Wfectl(self.url, self.config, (*self.env, *extra.items()))


def write_config(path: Path, body: str = "") -> Path:
    """A config file with the example steps (plus `body`)."""
    path.write_text(f"[steps]\nmodules = {json.dumps(STEP_MODULES)}\n{body}", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def wfectl_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config file of the session's `wfectl` runs: only `[steps] modules`."""
    return write_config(tmp_path_factory.mktemp("wfectl") / "config.toml")


@pytest.fixture(scope="session")
def schema_url(database_url: str, wfectl_config: Path) -> str:
    """The backend's test database after `wfectl db upgrade` (run once per backend)."""
    result = Wfectl(database_url, wfectl_config)("db", "upgrade")
    assert result.code == 0, result
    return database_url


@pytest.fixture
def wfectl(schema_url: str, wfectl_config: Path) -> Wfectl:
    """`wfectl` on the current backend's upgraded test database."""
    return Wfectl(schema_url, wfectl_config)


@pytest.fixture
def unique() -> str:
    """A suffix for this test's workflow and queue names (the database is shared)."""
    return uuid.uuid4().hex[:10]
