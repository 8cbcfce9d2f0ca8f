"""What `workflows.locks` may hold, and how `[locks] limits` gives a key its slots."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from wfed.config import LocksConfig, parse_config
from wfed.engine.views import Workflow
from wfed.errors import ConfigError, InvalidDefinition
from wfed.states import WorkflowState
from wfed.store.lock_keys import KEYS_MAX, parse_lock_keys
from wfed.store.rows import WorkflowRow
from wfed.unreadable_json import UnreadableJson


def test_keys_are_sorted_without_duplicates() -> None:
    """The keys come back in the order they are taken: sorted, each once."""
    assert parse_lock_keys(["pool:web", "cluster:db1", "pool:web"]) == ("cluster:db1", "pool:web")


def test_keys_are_case_insensitive() -> None:
    """Keys are taken in lower case: the same key however it is written."""
    assert parse_lock_keys(["Cluster:DB1", "cluster:db1", "POOL:web"]) == (
        "cluster:db1",
        "pool:web",
    )
    limits = LocksConfig(limits={"Pool:Web": 2, "DC:Paris": 3})
    assert limits.limit_of("pool:web:eu") == 2
    assert limits.limit_of("dc:paris") == 3


@pytest.mark.parametrize("value", [None, []])
def test_null_and_empty_name_no_key(value: object) -> None:
    """NULL and [] name no key."""
    assert parse_lock_keys(value) == ()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ({"key": "a"}, "it is an object"),
        ("cluster:db1", "it is a string"),
        (7, "it is a number"),
        (UnreadableJson("not json ["), "not json ["),
        ([1, 2], "element 0 is 1"),
        (["ok", None], "element 1 is null"),
        ([""], "element 0"),
        ([" padded"], "without surrounding spaces"),
        (["k" * 256], "256 characters"),
        ([f"k{i}" for i in range(KEYS_MAX + 1)], f"it has {KEYS_MAX + 1} elements"),
    ],
)
def test_unusable_values_are_named(value: object, said: str) -> None:
    """Each unusable value is an InvalidDefinition saying what `locks` must be and what
    is wrong with this one."""
    with pytest.raises(InvalidDefinition) as raised:
        parse_lock_keys(value)
    assert "`locks` must be a JSON list of key names" in str(raised.value)
    assert said in str(raised.value)


def test_message_is_bounded_whatever_the_value() -> None:
    """A huge value is quoted cut short: the message stays a few hundred characters."""
    for value in (["x" * 1_000_000], {"k": "y" * 1_000_000}, [["z" * 1_000_000]]):
        with pytest.raises(InvalidDefinition) as raised:
            parse_lock_keys(value)
        assert len(str(raised.value)) < 400
    assert len(json.dumps(["x" * 1_000_000])) > 1_000_000


def test_limit_of_exact_then_longest_prefix_then_one() -> None:
    """An exact entry wins, then the longest matching prefix, else one slot."""
    limits = LocksConfig(limits={"pool:": 2, "pool:web": 3, "pool:web:eu": 5, "dc:paris": 4})
    assert limits.limit_of("pool:web:eu") == 5
    assert limits.limit_of("pool:web:us") == 3
    assert limits.limit_of("pool:db") == 2
    assert limits.limit_of("dc:paris") == 4
    assert limits.limit_of("dc:lyon") == 1
    assert LocksConfig().limit_of("anything") == 1


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limits_out_of_range_name_the_key(limit: int) -> None:
    """A limit below 1 or above 1000 is a configuration error naming the section and key."""
    with pytest.raises(ConfigError, match=r"\[locks\] limits.*'pool:web'"):
        parse_config({"locks": {"limits": {"pool:web": limit}}})


def _row(locks: object) -> WorkflowRow:
    at = datetime(2026, 11, 30, 2, 0, 0)
    return WorkflowRow(
        id=1,
        name="maint-db1",
        state=WorkflowState.PENDING,
        steps=["noop"],
        context={},
        current_step=0,
        queue="default",
        priority=0,
        run_after=None,
        requested=None,
        claimed_by=None,
        lease_expires_at=None,
        fence=0,
        last_error=None,
        created_at=at,
        updated_at=at,
        finished_at=None,
        locks=locks,
    )


def test_a_view_from_the_row_alone_names_the_keys_and_nothing_more() -> None:
    """A workflow read from its row alone (watch's snapshots) gives the keys its row
    names, and null for what it holds and waits for, rather than claiming none."""
    document = Workflow(row=_row(["Cluster:DB1"]), steps=[]).to_json()["locks"]
    assert document == {
        "named": ["cluster:db1"],
        "held": None,
        "waiting_for": None,
        "invalid": None,
    }
    broken = Workflow(row=_row({"not": "a list"}), steps=[]).to_json()["locks"]
    assert broken["named"] == []
    assert "`locks` must be a JSON list" in broken["invalid"]
