"""Concurrency keys through the real `wfectl`: `create --lock`, a runbook's `locks`,
`show` of a waiting workflow and of its holder, `locks`, and `locks release`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wfed import Engine, WorkflowHalted

from .conftest import Result, Wfectl


def refused(result: Result, *fragments: str) -> None:
    """Exit code 1 and one `wfectl: …` line on stderr naming `fragments`."""
    assert result.code == 1, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("wfectl: "), result
    for fragment in fragments:
        assert fragment in lines[0], result


def pause_at_gate(url: str, name: str) -> None:
    """Run a workflow in this process until its pause step halts it (it keeps its keys)."""

    async def main() -> None:
        async with Engine(url, step_modules=["wfed.examples"]) as engine:
            with pytest.raises(WorkflowHalted):
                await engine.run(name)

    asyncio.run(main())


def test_holder_waiter_listing_and_release(wfectl: Wfectl, unique: str, schema_url: str) -> None:
    """A workflow paused at a gate holds its key; `show` of a second one on the key names
    the key and its holder (table and --json), `locks --json` lists both, and `locks
    release --reason` frees the key with an event naming the operator."""
    queue, key = f"q-{unique}", f"cluster:{unique}"
    holder, waiter = f"hold-{unique}", f"wait-{unique}"
    created = wfectl(
        "create", holder, "--step", "pause", "--step", "sleep", "--queue", queue, "--lock", key
    )
    assert created.code == 0, created
    assert f"keys {key}" in created.out
    assert wfectl("create", waiter, "-s", "sleep", "-q", queue, "--lock", key).code == 0
    try:
        pause_at_gate(schema_url, holder)

        shown = wfectl("show", waiter, "--json").json()["locks"]
        assert shown["named"] == [key]
        [wait] = shown["waiting_for"]
        assert (wait["key"], wait["limit"]) == (key, 1)
        assert [(h["workflow"], h["state"]) for h in wait["holders"]] == [(holder, "paused")]
        table = wfectl("show", waiter)
        assert table.code == 0, table
        assert "waiting for" in table.out
        assert f"held by {holder} (paused)" in " ".join(table.out.split())
        assert wfectl("show", holder, "--json").json()["locks"]["held"][0]["key"] == key

        [status] = [s for s in wfectl("locks", "--json").json() if s["key"] == key]
        assert status["limit"] == 1
        assert [h["workflow"] for h in status["holders"]] == [holder]
        assert status["waiting"] == [waiter]
        assert wfectl("locks").code == 0

        assert wfectl("locks", "release", key).code == 2  # --reason is required
        released = wfectl("locks", "release", key, "--workflow", holder, "--reason", "by hand")
        assert released.code == 0, released
        assert f"released {key} slot 0 held by {holder} (paused)" in released.out
        events = wfectl("history", holder, "--json").json()
        [event] = [e for e in events if e["kind"] == "lock_released"]
        assert event["reason"] == "by hand"
        assert event["detail"]["key"] == key
        assert "@" in event["actor"]
        refused(wfectl("locks", "release", key, "--reason", "again"), key, "not held")
        assert wfectl("show", waiter, "--json").json()["locks"]["waiting_for"] == []
    finally:
        for name in (holder, waiter):
            wfectl("delete", name)


def test_bad_key_and_runbook_locks(wfectl: Wfectl, unique: str, tmp_path: Path) -> None:
    """A key that is no key name is refused in one line (by `--dry-run` too); a runbook's
    `locks` are rendered with its parameters into the workflow's keys."""
    refused(wfectl("create", f"bad-{unique}", "-s", "sleep", "--lock", " padded "), "locks")
    dry = wfectl("create", f"bad-{unique}", "-s", "sleep", "--lock", " padded ", "--dry-run")
    refused(dry, "locks", "without surrounding spaces")
    queue = f"q-{unique}"
    runbook = tmp_path / "maint.toml"
    runbook.write_text(
        f'name = "rb-{unique}-{{cluster}}"\nqueue = "{queue}"\n'
        'locks = ["cluster:{cluster}"]\n'
        '[params.cluster]\ntype = "string"\n'
        '[[steps]]\nstep = "sleep"\nargs = { seconds = 0 }\n',
        encoding="utf-8",
    )
    result = wfectl("run", str(runbook), "--param", "cluster=db7")
    assert result.code == 0, result
    name = f"rb-{unique}-db7"
    try:
        assert wfectl("show", name, "--json").json()["locks"]["named"] == ["cluster:db7"]
    finally:
        wfectl("delete", name)
