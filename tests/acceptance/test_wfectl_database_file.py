"""No verb but `db upgrade` creates an SQLite file: run in the wrong directory (or with a
wrong URL), `wfectl` says which file it looked for instead of making an empty one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import WFECTL, Result, _environment


def ok(result: Result, *fragments: str) -> str:
    assert result.code == 0, result
    assert result.err == "", result
    for fragment in fragments:
        assert fragment in result.out, result
    return result.out


def refused(result: Result, *fragments: str) -> str:
    assert result.code == 1, result
    assert result.out == "", result
    [line] = result.err.splitlines()
    assert line.startswith("wfectl: "), result
    for fragment in fragments:
        assert fragment in line, result
    return line


def test_only_db_upgrade_creates_a_sqlite_file(tmp_path: Path, wfectl_config: Path) -> None:
    """Run in a directory without a database (the default URL is the relative `wfed.db`),
    every command is refused naming the file it looked for, absolute, and creates
    nothing; `db upgrade` creates it."""
    where = tmp_path / "wfed.db"

    def here(*args: str) -> Result:
        env = _environment("sqlite+aiosqlite:///wfed.db", wfectl_config, {})
        done = subprocess.run(
            [str(WFECTL), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(tuple(args), done.returncode, done.stdout, done.stderr)

    for args in (
        ["list"],
        ["show", "x"],
        ["pause", "x"],
        ["daemons"],
        ["purge", "--older-than", "1d"],
    ):
        refused(here(*args), f"no SQLite database at {where}:", "`wfectl db upgrade`")
    health = here("health")
    assert health.code == 1, health
    assert f"no SQLite database at {where}:" in health.err, health
    assert list(tmp_path.iterdir()) == []
    ok(here("db", "upgrade"), "upgraded: none -> ")
    assert where.exists()
    ok(here("list"), "no workflows")
