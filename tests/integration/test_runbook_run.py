"""A runbook file with parameters, enqueued and run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import unique_name
from sqlalchemy import func, select

from wfed import Engine, WorkflowState
from wfed.engine.runbooks import InvalidRunbook
from wfed.store.schema import workflows

RUNBOOK = """
name = "rb-{{key}}"
queue = "{queue}"

[params.key]
type = "string"

[params.times]
type = "int"
default = 2

[context]
key = "{{key}}"
times = "{{times}}"

[[steps]]
step = "record"
args = {{ key = "{{key}}" }}

[[steps]]
step = "noop"
"""


async def _count(engine: Engine) -> int:
    async with engine.db.transaction() as conn:
        return int(await conn.scalar(select(func.count()).select_from(workflows)) or 0)


async def test_a_runbook_runs_and_its_first_event_says_where_it_came_from(
    engine: Engine, tmp_path: Path
) -> None:
    """A runbook enqueued with a parameter runs to completion; its `created` event holds
    the file's path and sha256 and the parameters, as `history` shows."""
    path = tmp_path / "record.toml"
    path.write_text(RUNBOOK.format(queue=unique_name("q")))
    key = unique_name("key")
    created = await engine.run_runbook(str(path), {"key": key})
    assert created.name == f"rb-{key}"
    assert created.context == {"key": key, "times": 2}
    done = await engine.run(created.name)
    assert done.state is WorkflowState.COMPLETED
    first = (await engine.history(created.name))[0]
    assert first.kind == "created"
    assert first.detail["runbook"] == str(path.resolve())
    assert len(first.detail["sha256"]) == 64
    assert first.detail["params"] == {"key": key, "times": 2}


@pytest.mark.parametrize(
    ("params", "text", "message"),
    [
        ({}, RUNBOOK, "missing parameter 'key'"),
        ({"key": "k", "times": "x"}, RUNBOOK, "'x' is not an int"),
        ({"key": "k"}, RUNBOOK.replace('step = "noop"', 'step = "no_such_step"'), "unknown step"),
        ({"key": "k"}, RUNBOOK + "colour = 1\n", "unknown key"),
    ],
)
async def test_a_bad_runbook_writes_nothing(
    engine: Engine, tmp_path: Path, params: dict[str, str], text: str, message: str
) -> None:
    """A bad runbook or parameter is one message naming the file, and nothing is written."""
    path = tmp_path / "bad.toml"
    path.write_text(text.format(queue=unique_name("q")))
    before = await _count(engine)
    with pytest.raises(InvalidRunbook) as caught:
        await engine.run_runbook(str(path), params)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert await _count(engine) == before


async def test_lint_reports_every_bad_file(engine: Engine, tmp_path: Path) -> None:
    """`lint_runbooks` names each bad file of a directory and passes the good ones."""
    (tmp_path / "good.toml").write_text(RUNBOOK.format(queue="q"))
    (tmp_path / "bad.toml").write_text(RUNBOOK.format(queue="q").replace("noop", "nope"))
    (tmp_path / "broken.json").write_text("{")
    problems = engine.lint_runbooks(str(tmp_path))
    assert len(problems) == 2
    assert any("bad.toml" in p and "unknown step 'nope'" in p for p in problems)
    assert any("broken.json" in p and "not valid JSON" in p for p in problems)
