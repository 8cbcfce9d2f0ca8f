"""The chaos tier's audit must see what it counts: each violation, written by hand into a
journal and a set of database records, is found (and a clean run passes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import (
    StepRecord,
    StepSpec,
    WorkflowRecord,
    WorkflowSpec,
    audit,
    read_journal,
)

pytestmark = pytest.mark.chaos

SPEC = WorkflowSpec(
    "w",
    (
        StepSpec("w0", "slow_idempotent", 0.1),
        StepSpec("w1", "slow", 0.1),
        StepSpec("w2", "mark"),
    ),
)
INTERRUPTED = "interrupted while running step 1 'slow' (attempt 1); it is not idempotent"


def run_audit(
    tmp_path: Path,
    lines: list[str],
    state: str,
    steps: list[tuple[str, int]],
    context: dict[str, int],
    last_error: str | None = None,
    *,
    errors_allowed: bool = True,
) -> dict[str, int]:
    journal = tmp_path / "journal.txt"
    journal.write_text("".join(f"{line}\n" for line in lines))
    record = WorkflowRecord(
        "w",
        state,
        last_error,
        context,
        [StepRecord(p, s, a) for p, (s, a) in enumerate(steps)],
    )
    result = audit([SPEC], {"w": record}, read_journal(journal), errors_allowed=errors_allowed)
    return result.figures()


DONE = [("completed", 1)] * 3
BY_1 = {"w0_by": 1, "w1_by": 1, "w2_by": 1}
CLEAN = ["start w0 1", "end w0 1", "start w1 1", "end w1 1", "ran w2 1"]


def test_a_clean_run_passes(tmp_path: Path) -> None:
    """Each step run once and committed: nothing is counted."""
    figures = run_audit(tmp_path, CLEAN, "completed", DONE, BY_1)
    assert figures["completed"] == 1
    problems = {k: v for k, v in figures.items() if k not in {"workflows", "steps", "completed"}}
    assert problems == {k: 0 for k in problems} | {"step_runs": 3}


def test_an_idempotent_rerun_after_an_interruption_is_allowed(tmp_path: Path) -> None:
    """pid 1 died in step 0 after its end line; pid 2 ran it again and committed."""
    lines = ["start w0 1", "end w0 1", "start w0 2", "end w0 2", *CLEAN[2:]]
    context = {**BY_1, "w0_by": 2}
    steps = [("completed", 2), ("completed", 1), ("completed", 1)]
    figures = run_audit(tmp_path, lines, "completed", steps, context)
    assert figures["idempotent_reruns"] == 1
    assert figures["committed_rerun"] == 0


def test_a_committed_step_run_again_is_counted(tmp_path: Path) -> None:
    """pid 1's run of step 0 was kept, yet pid 2 started it again afterwards."""
    lines = ["start w0 1", "end w0 1", "start w0 2", "end w0 2", *CLEAN[2:]]
    steps = [("completed", 2), ("completed", 1), ("completed", 1)]
    assert run_audit(tmp_path, lines, "completed", steps, BY_1)["committed_rerun"] == 1


def test_a_non_idempotent_rerun_is_counted(tmp_path: Path) -> None:
    """A `slow` step started by pid 1 and again by pid 2 is a non-idempotent re-run."""
    lines = ["start w0 1", "end w0 1", "start w1 1", "start w1 2", "end w1 2", "ran w2 2"]
    context = {"w0_by": 1, "w1_by": 2, "w2_by": 2}
    steps = [("completed", 1), ("completed", 2), ("completed", 1)]
    assert run_audit(tmp_path, lines, "completed", steps, context)["non_idempotent_rerun"] == 1


def test_a_run_without_an_attempt_is_counted(tmp_path: Path) -> None:
    """A step that ran once while its row says 0 attempts is a run without an attempt."""
    steps = [("completed", 1), ("completed", 1), ("completed", 0)]
    assert run_audit(tmp_path, CLEAN, "completed", steps, BY_1)["unrecorded_runs"] == 1


def test_an_interrupted_non_idempotent_step_is_an_allowed_error(tmp_path: Path) -> None:
    """An interrupted non-idempotent step in error is allowed, unless no error is."""
    lines = ["start w0 1", "end w0 1", "start w1 1"]
    steps = [("completed", 1), ("error", 1), ("pending", 0)]
    figures = run_audit(tmp_path, lines, "error", steps, {"w0_by": 1}, INTERRUPTED)
    assert figures["error_interrupted"] == 1
    assert figures["bad_errors"] == 0
    strict = run_audit(
        tmp_path, lines, "error", steps, {"w0_by": 1}, INTERRUPTED, errors_allowed=False
    )
    assert strict["bad_errors"] == 1


def test_any_other_error_is_counted(tmp_path: Path) -> None:
    """A workflow in error for anything but an interruption is a bad error."""
    lines = ["start w0 1", "end w0 1", "start w1 1", "end w1 1"]
    steps = [("completed", 1), ("error", 1), ("pending", 0)]
    figures = run_audit(tmp_path, lines, "error", steps, {"w0_by": 1}, "RuntimeError: boom")
    assert figures["bad_errors"] == 1


def test_a_workflow_left_running_is_lost(tmp_path: Path) -> None:
    """A workflow still running at the end is lost."""
    steps = [("completed", 1), ("running", 1), ("pending", 0)]
    assert run_audit(tmp_path, CLEAN[:3], "running", steps, {"w0_by": 1})["lost"] == 1


def test_a_completed_step_without_its_run_is_inconsistent(tmp_path: Path) -> None:
    """The context names a process that never finished the step."""
    context = {**BY_1, "w1_by": 9}
    assert run_audit(tmp_path, CLEAN, "completed", DONE, context)["inconsistent"] == 1
