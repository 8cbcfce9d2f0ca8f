"""`wfectl` and maintenance windows: `create --window`, what `show` says of them, and
window specs refused with one line (at create, at --dry-run, in the config)."""

from __future__ import annotations

from pathlib import Path

from .conftest import Wfectl, write_config

ALWAYS = "daily 00:00-24:00 UTC"
NIGHTS = "mon-fri 22:00-02:00 Europe/Paris"


def test_create_with_windows_and_show_them(wfectl: Wfectl, unique: str) -> None:
    """--window is repeatable; `show --json` lists the windows and whether they are open
    now, and `show` prints them."""
    name = f"windowed-{unique}"
    created = wfectl(
        "create", name, "--queue", f"q-{unique}", "--step", "stop_app", "--window", ALWAYS,
        "--window", NIGHTS,
    )  # fmt: skip
    assert created.code == 0, created
    assert f"in 2 windows ({ALWAYS}, {NIGHTS})" in created.out
    try:
        document = wfectl("show", name, "--json").json()
        assert document["windows"] == [ALWAYS, NIGHTS]
        assert document["window_open"] is True
        assert document["window_opens_at"] is None
        assert document["window_paused"] is None
        shown = wfectl("show", name)
        assert shown.code == 0, shown
        assert "windows" in shown.out
        assert "open now" in shown.out
    finally:
        assert wfectl("delete", name).code == 0


def test_a_workflow_without_windows_shows_none(wfectl: Wfectl, unique: str) -> None:
    """Without windows, `show --json` has an empty list and the window is open."""
    name = f"unwindowed-{unique}"
    assert wfectl("create", name, "--queue", f"q-{unique}", "--step", "stop_app").code == 0
    try:
        document = wfectl("show", name, "--json").json()
        assert (document["windows"], document["window_open"]) == ([], True)
        assert "windows" not in wfectl("show", name).out
    finally:
        assert wfectl("delete", name).code == 0


def test_windows_command_replaces_and_clears(wfectl: Wfectl, unique: str) -> None:
    """`wfectl windows NAME --window …` replaces a workflow's windows and `--clear` drops
    them, each recorded with its reason; neither option is a usage error."""
    name = f"rewindowed-{unique}"
    assert wfectl("create", name, "--step", "stop_app", "--window", NIGHTS).code == 0
    try:
        replaced = wfectl("windows", name, "--window", ALWAYS, "--reason", "new plan")
        assert replaced.code == 0, replaced
        assert wfectl("show", name, "--json").json()["windows"] == [ALWAYS]
        cleared = wfectl("windows", name, "--clear", "--reason", "run it now")
        assert cleared.code == 0, cleared
        assert f"{name} has no windows of its own now" in cleared.out
        assert wfectl("show", name, "--json").json()["windows"] == []
        history = wfectl("history", name, "--json").json()
        assert [(e["kind"], e["reason"]) for e in history if e["kind"] == "windows_set"] == [
            ("windows_set", "new plan"),
            ("windows_set", "run it now"),
        ]
        assert wfectl("windows", name).code == 2
    finally:
        assert wfectl("delete", name).code == 0


def test_a_bad_window_is_refused_in_one_line(wfectl: Wfectl, unique: str) -> None:
    """A spec that cannot be read fails create and --dry-run with exit 1 and one line
    naming it; nothing is written."""
    name = f"badwindow-{unique}"
    for extra in ((), ("--dry-run",)):
        result = wfectl(
            "create", name, "--step", "stop_app", "--window", "saturday 2am-5am", *extra
        )
        assert result.code == 1, result
        assert "cannot read window 'saturday 2am-5am'" in result.err
        assert result.err.count("\n") == 1
    assert wfectl("show", name).code == 1


def test_a_bad_queue_window_in_the_config_names_the_key(wfectl: Wfectl, tmp_path: Path) -> None:
    """[windows] queues with an unknown zone: exit 1, naming the queue and the zone."""
    config = write_config(
        tmp_path / "config.toml", '[windows]\nqueues = {maint = ["sat 02:00-05:00 Mars/Base"]}\n'
    )
    result = Wfectl(wfectl.url, config)("list")
    assert result.code == 1, result
    assert "[windows] queues.maint" in result.err
    assert "unknown time zone 'Mars/Base'" in result.err
