"""`wfectl schedule …`: the real executable, on every backend."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .conftest import NO_DATABASE, Wfectl

RUNBOOK = """\
name = "ignored"
queue = "{queue}"

[params.servers]
type = "list"

[context]
target_servers = "{{servers}}"

[[steps]]
step = "stop_app"
"""


def test_add_list_next_pause_resume_remove(wfectl: Wfectl, unique: str) -> None:
    """A schedule added with steps is listed (`--json`), shows its next runs in its zone
    and in UTC, is paused and resumed, then removed; a second remove is refused."""
    name = f"nightly-{unique}"
    added = wfectl(
        "schedule", "add", name, "--cron", "30 2 * * *", "--tz", "Europe/Paris",
        "--step", "stop_app", "--ctx", 'target_servers=["web1"]', "--queue", f"q-{unique}",
        "--lock", f"cluster:{unique}",
    )  # fmt: skip
    assert added.code == 0, added
    assert f"added schedule {name}: '30 2 * * *' in Europe/Paris, next run " in added.out
    try:
        listed = {item["name"]: item for item in wfectl("schedule", "list", "--json").json()}
        mine = listed[name]
        assert (mine["state"], mine["cron"], mine["timezone"]) == (
            "active",
            "30 2 * * *",
            "Europe/Paris",
        )
        assert (mine["queue"], mine["steps"], mine["catchup"]) == (f"q-{unique}", 1, "once")
        assert mine["locks"] == [f"cluster:{unique}"]
        assert mine["created_by"].count("@") == 1

        ticks = wfectl("schedule", "next", name, "--count", "3", "--json").json()
        assert len(ticks) == 3
        for tick in ticks:
            local = datetime.fromisoformat(tick["local"])
            assert (local.hour, local.minute) in {(2, 30), (3, 0)}  # 03:00: spring forward
            assert datetime.fromisoformat(tick["utc"].replace("Z", "+00:00")) == local

        paused, shown = wfectl.many([("schedule", "pause", name), ("schedule", "next", name)])
        assert paused.code == 0, paused
        assert paused.out.strip() == f"paused schedule {name}"
        assert shown.code == 0, shown
        listed = {item["name"]: item for item in wfectl("schedule", "list", "--json").json()}
        assert listed[name]["state"] == "paused"
        resumed = wfectl("schedule", "resume", name)
        assert resumed.code == 0
        assert resumed.out.startswith(f"resumed schedule {name}: next run")
        table = wfectl("schedule", "list")
        assert table.code == 0
        assert name in table.out
        assert "active" in table.out
    finally:
        removed = wfectl("schedule", "remove", name)
    assert removed.code == 0, removed
    assert removed.out.strip() == f"removed schedule {name}"
    again = wfectl("schedule", "remove", name)
    assert (again.code, again.err) == (1, f"wfectl: no schedule named {name!r}\n")


def test_refusals_are_one_line_and_write_nothing(wfectl: Wfectl, unique: str) -> None:
    """A bad cron expression, time zone or step is one line and exit code 1; options that
    do not go together are a usage error (exit code 2); nothing is added."""
    name = f"bad-{unique}"
    results = wfectl.many(
        [
            ("schedule", "add", name, "--cron", "61 2 * * *", "--step", "stop_app"),
            ("schedule", "add", name, "--cron", "0 2 * * *", "--tz", "Mars/Base", "-s", "x"),
            ("schedule", "add", name, "--cron", "0 2 * * *", "--step", "no_such_step"),
            ("schedule", "add", name, "--cron", "0 2 * * *"),
            ("schedule", "add", name, "--cron", "0 2 * * *", "-s", "stop_app", "--param", "a=1"),
            ("schedule", "add", name, "--cron", "0 2 * * *", "-s", "x", "--catchup", "all"),
        ]
    )
    bad_cron, bad_zone, bad_step, neither, stray_param, bad_catchup = results
    assert (bad_cron.code, bad_cron.err) == (
        1,
        "wfectl: cron expression '61 2 * * *': Bad minute\n",
    )
    assert bad_zone.code == 1
    assert bad_zone.err.startswith("wfectl: unknown time zone 'Mars/Base'")
    assert bad_step.code == 1
    assert "unknown step 'no_such_step'" in bad_step.err
    assert bad_step.err.count("\n") == 1
    assert "give what to run: --runbook FILE or --step" in neither.err
    for usage in (neither, stray_param, bad_catchup):
        assert usage.code == 2, usage
    listed = wfectl("schedule", "list", "--json").json()
    assert name not in {item["name"] for item in listed}


def test_a_bad_cron_is_told_without_a_database(wfectl: Wfectl) -> None:
    """The expression is checked before connecting: a typo is told as such even when the
    database is away."""
    result = Wfectl(NO_DATABASE, wfectl.config)(
        "schedule", "add", "x", "--cron", "* * *", "--step", "stop_app"
    )
    assert result.code == 1
    assert "cron expression '* * *' must have 5 fields" in result.err


def test_a_runbook_schedule_records_its_provenance(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """`--runbook FILE --param …` renders the runbook at add time; `list` names the file,
    a duplicate name is refused."""
    path = tmp_path / "maint.toml"
    path.write_text(RUNBOOK.format(queue=f"q-{unique}"))
    name = f"weekly-{unique}"
    args = ("schedule", "add", name, "--cron", "0 3 * * sat", "--tz", "Europe/Paris")
    added = wfectl(*args, "--runbook", str(path), "--param", "servers=web1,web2")
    assert added.code == 0, added
    assert f"from {path}" in added.out
    try:
        duplicate = wfectl(*args, "--step", "stop_app")
        assert (duplicate.code, duplicate.err) == (
            1,
            f"wfectl: a schedule named {name!r} already exists\n",
        )
        listed = {item["name"]: item for item in wfectl("schedule", "list", "--json").json()}
        assert listed[name]["runbook"] == str(path.resolve())
        assert listed[name]["queue"] == f"q-{unique}"
    finally:
        assert wfectl("schedule", "remove", name).code == 0
