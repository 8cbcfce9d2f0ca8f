"""Runbook files with maintenance windows: carried to the workflow, checked when read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from wfed.engine.runbooks import InvalidRunbook, enqueue, load_runbook

NOW = datetime(2026, 11, 29, 2, 30, 0)


def _runbook(tmp_path: Path, windows: str) -> Path:
    path = tmp_path / "windowed.toml"
    path.write_text(f'name = "maint-{{date}}"\nwindows = {windows}\n\n[[steps]]\nstep = "noop"\n')
    return path


def test_windows_are_carried_to_the_enqueued_row(tmp_path: Path) -> None:
    """`windows = [...]` reaches the row the runbook enqueues, as written."""
    specs = '["sat 02:00-05:00 Europe/Paris", "sun 02:00-05:00 Europe/Paris"]'
    row = enqueue(load_runbook(_runbook(tmp_path, specs)), {}, now=NOW)
    assert row.windows == ["sat 02:00-05:00 Europe/Paris", "sun 02:00-05:00 Europe/Paris"]


def test_a_runbook_without_windows_has_none(tmp_path: Path) -> None:
    """No `windows` key: no windows (the workflow may run at any time)."""
    path = tmp_path / "plain.toml"
    path.write_text('name = "plain"\n\n[[steps]]\nstep = "noop"\n')
    assert enqueue(load_runbook(path), {}, now=NOW).windows == []


@pytest.mark.parametrize(
    ("windows", "names"),
    [
        ('["sat 02:00-05:00 Atlantis/Capital"]', "unknown time zone 'Atlantis/Capital'"),
        ('["weekends"]', "cannot read window 'weekends'"),
        ('"sat 02:00-05:00"', "windows"),
    ],
)
def test_a_bad_window_names_the_file_and_the_problem(
    tmp_path: Path, windows: str, names: str
) -> None:
    """A window that cannot be read is an InvalidRunbook naming the file and the spec."""
    path = _runbook(tmp_path, windows)
    with pytest.raises(InvalidRunbook) as raised:
        load_runbook(path)
    assert str(path) in str(raised.value)
    assert names in str(raised.value)
