"""Which notification wakes what: new work in one of the daemon's queues wakes its
claimer, a request on a workflow it runs wakes its heartbeat, anything else nothing —
and a payload it cannot read never raises into the driver."""

from __future__ import annotations

from wfed.daemon.wakeups import Wakeups


class Woken:
    def __init__(self) -> None:
        self.claimer = 0
        self.heartbeat = 0

    def wakeups(self) -> Wakeups:
        return Wakeups(
            None,  # type: ignore[arg-type]  # on_message never touches the database
            ["maint", "default"],
            wake_claimer=self.claim,
            wake_heartbeat=self.beat,
            runs=lambda workflow_id: workflow_id == 42,
        )

    def claim(self) -> None:
        self.claimer += 1

    def beat(self) -> None:
        self.heartbeat += 1


def test_pending_work_in_a_served_queue_wakes_the_claimer() -> None:
    woken = Woken()
    wakeups = woken.wakeups()
    wakeups.on_message("pending maint")
    wakeups.on_message("pending other")
    assert (woken.claimer, woken.heartbeat) == (1, 0)


def test_a_request_on_a_workflow_it_runs_wakes_the_heartbeat() -> None:
    woken = Woken()
    wakeups = woken.wakeups()
    wakeups.on_message("request 42")
    wakeups.on_message("request 43")
    assert (woken.claimer, woken.heartbeat) == (0, 1)


def test_an_unreadable_payload_wakes_nothing_and_never_raises() -> None:
    woken = Woken()
    wakeups = woken.wakeups()
    for payload in ("", "request", "request x42", "pending", "something else", "\x00"):
        wakeups.on_message(payload)
    assert (woken.claimer, woken.heartbeat) == (0, 0)
    assert wakeups.heard == 6


def test_a_failing_wake_is_swallowed() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    wakeups = Wakeups(
        None,  # type: ignore[arg-type]
        ["maint"],
        wake_claimer=broken,
        wake_heartbeat=broken,
        runs=lambda _: True,
    )
    wakeups.on_message("pending maint")
    wakeups.on_message("request 1")
