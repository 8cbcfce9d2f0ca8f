"""What a `wfectl` command imports: only what it needs, so that it starts fast and runs on
a host without the runbook code.

`--help` imports neither SQLAlchemy nor rich nor the configuration's validation; reading
and controlling workflows import no Alembic, no SQLAlchemy ORM, no structlog, no step
module, and
controlling (one line of output) no rich either. The step modules are imported where
steps are validated (`create`, `steps`, dry runs), and one that does not import is named
there with its error.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Result, Wfectl, _environment, write_config

# Runs the wfectl entry point with the given arguments, then writes which of the
# watched modules it imported to the file named by $WFECTL_PROBE.
PROBE = """
import json, os, sys
sys.argv = ["wfectl", *sys.argv[1:]]
from wfed.cli import main
try:
    main()
except SystemExit:
    pass
finally:
    watched = json.loads(os.environ["WFECTL_WATCHED"])
    with open(os.environ["WFECTL_PROBE"], "w") as out:
        json.dump(sorted(m for m in watched if m in sys.modules), out)
"""
# The parts of the engine that only other commands use (bulk, `db grants`, `notify`,
# `logs` and `watch`, steps validated): reading or controlling one workflow loads none.
ENGINE_PARTS_OF_OTHER_COMMANDS = [
    "wfed.engine.bulk",
    "wfed.store.selection",
    "wfed.store.grants",
    "wfed.store.notifications",
    "wfed.engine.output_view",
    "wfed.engine.snapshot",
    "wfed.steps.registry",
]
HEAVY = [
    "sqlalchemy",
    "sqlalchemy.orm",
    "alembic",
    "rich",
    "typer.rich_utils",
    "structlog",
    "pydantic",
    "prometheus_client",
    "httpx",
    "wfed.engine.facade",
    "wfed.steps.builtin",
    "wfed.examples",
    *ENGINE_PARTS_OF_OTHER_COMMANDS,
]
MISSING_MODULE = "wfed_no_such_runbooks"


def imported(cli: Wfectl, tmp_path: Path, *args: str) -> tuple[Result, set[str]]:
    """Run `wfectl ARGS` in a fresh interpreter; its result and the HEAVY modules it
    imported."""
    probe = tmp_path / "imported.json"
    env = _environment(cli.url, cli.config, {})
    env.update(WFECTL_PROBE=str(probe), WFECTL_WATCHED=json.dumps(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result = Result(tuple(args), done.returncode, done.stdout, done.stderr)
    return result, set(json.loads(probe.read_text()))


@pytest.fixture(scope="module")
def sqlite_cli(
    sqlite_url: str, wfectl_config: Path, upgrade_schema: Callable[[str], None]
) -> Wfectl:
    """wfectl on the session's upgraded SQLite database, with the example step modules."""
    upgrade_schema(sqlite_url)
    return Wfectl(sqlite_url, wfectl_config)


def test_help_imports_no_database_no_rich_no_config(sqlite_cli: Wfectl, tmp_path: Path) -> None:
    """`wfectl --help` needs none of the heavy libraries; the help of a command none but
    pydantic, with which typer converts the global options' values."""
    for args, allowed in (
        (["--help"], set()),
        (["show", "--help"], {"pydantic"}),
        (["db", "--help"], {"pydantic"}),
    ):
        result, modules = imported(sqlite_cli, tmp_path, *args)
        assert result.code == 0, result
        assert "Usage: wfectl" in result.out, result
        assert modules <= allowed, (args, modules)


def test_read_and_control_import_no_alembic_structlog_or_steps(
    sqlite_cli: Wfectl, tmp_path: Path, unique: str
) -> None:
    """`show` imports SQLAlchemy and rich (it draws a table), but no Alembic, structlog,
    metrics, step module or part of the engine that only other commands use; `pause`
    and `resume` (one line each) not rich either;
    `create --dry-run` validates steps, so it imports the step modules."""
    name = f"lean-{unique}"
    assert sqlite_cli("create", name, "--queue", f"q-{unique}", "--step", "sleep").code == 0
    never = {
        "alembic",
        # SQLAlchemy Core only: sqlalchemy.ext.asyncio comes without its ORM session.
        "sqlalchemy.orm",
        "structlog",
        "prometheus_client",
        "httpx",
        "wfed.steps.builtin",
        "wfed.examples",
        *ENGINE_PARTS_OF_OTHER_COMMANDS,
    }
    for args, also_not in (
        (["show", name], set()),
        (["pause", name], {"rich", "typer.rich_utils"}),
        (["resume", name], {"rich", "typer.rich_utils"}),
    ):
        result, modules = imported(sqlite_cli, tmp_path, *args)
        assert result.code == 0, result
        assert "sqlalchemy" in modules, (args, modules)
        assert not modules & (never | also_not), (args, modules & (never | also_not))

    result, modules = imported(sqlite_cli, tmp_path, "create", "x", "--step", "sleep", "--dry-run")
    assert result.code == 0, result
    assert {"wfed.steps.builtin", "wfed.examples"} <= modules


def test_without_the_step_modules_only_validating_steps_fails(
    sqlite_cli: Wfectl, tmp_path: Path, unique: str
) -> None:
    """With a config naming a step module this host does not have, every command that
    reads or controls workflows works; `create`, `create --dry-run` and `steps` fail
    with one line naming the module and its import error."""
    name, queue = f"nosteps-{unique}", f"q-{unique}"
    assert sqlite_cli("create", name, "--queue", queue, "--step", "sleep").code == 0
    config = tmp_path / "config.toml"
    config.write_text(f'[steps]\nmodules = ["{MISSING_MODULE}"]\n', encoding="utf-8")
    admin = Wfectl(sqlite_cli.url, config)

    for args in (
        ["show", name],
        ["show", name, "--json"],
        ["list", "--queue", queue],
        ["history", name],
        ["export", name],
        ["pause", name, "--reason", "checking"],
        ["ctx", name, "set", "n=1"],
        ["resume", name],
        ["stop", name],
        ["restart", name, "--from-step", "0"],
        ["daemons"],
        ["health", "--queue", f"idle-{unique}"],
        ["purge", "--older-than", "3650d", "--dry-run"],
        ["delete", name],
        ["db", "upgrade"],
    ):
        result = admin(*args)
        assert result.code == 0, result
        assert result.err == "", result

    for args in (
        ["create", f"{name}-2", "--queue", queue, "--step", "sleep"],
        ["create", f"{name}-2", "--step", "sleep", "--dry-run"],
        ["steps"],
    ):
        result = admin(*args)
        assert result.code == 1, result
        assert result.out == "", result
        [line] = result.err.splitlines()
        assert line.startswith("wfectl: [steps] modules: cannot import"), line
        assert f"'{MISSING_MODULE}'" in line, line
        assert "No module named" in line, line


def test_a_step_module_that_fails_to_import_is_named_with_its_error(
    sqlite_cli: Wfectl, tmp_path: Path
) -> None:
    """A step module that raises while it loads: `steps` names it and the error."""
    config = write_config(tmp_path / "broken.toml")
    config.write_text('[steps]\nmodules = ["tests.stepmods.broken"]\n', encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    cli = Wfectl(sqlite_cli.url, config).with_env(
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    )
    result = cli("steps")
    assert result.code == 1, result
    [line] = result.err.splitlines()
    assert "importing 'tests.stepmods.broken' failed: RuntimeError: broken step module" in line


def test_a_commands_work_runs_with_the_garbage_collector_on(
    sqlite_cli: Wfectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry point switches the garbage collector off for the imports; the command's
    work (which may run for hours: `watch`, `logs --follow`) runs with it on again, and
    with what start-up made frozen, never walked again."""
    from wfed.cli.run import Settings, run_engine  # noqa: PLC0415

    monkeypatch.setenv("WFED_DATABASE_URL", sqlite_cli.url)

    async def work(_engine: object) -> tuple[bool, int]:
        return gc.isenabled(), gc.get_freeze_count()

    gc.disable()
    try:
        enabled, frozen = run_engine(Settings(config_path=str(sqlite_cli.config)), work)
    finally:
        gc.unfreeze()
        gc.enable()
    assert enabled
    assert frozen > 0
