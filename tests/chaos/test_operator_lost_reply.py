"""An operator's write whose COMMIT landed but whose reply was lost (the connection reset
as the answer came back): wfectl and the Engine re-read before saying anything, and
report the write done — not failed, which a retry would then find refused ("already
exists", "it is paused") for what it did itself."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from proxy import ChaosProxy, Verdict
from sqlalchemy.engine import make_url

from wfed import Engine, WorkflowState

pytestmark = [pytest.mark.chaos]

COM_QUERY = 3


class LoseCommitReplies:
    """A proxy script: the reply to each COMMIT of a transaction that recorded an event is
    reset (the commit lands; the client sees the connection lost), while `armed`."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.recording: set[int] = set()
        self.committing: set[int] = set()
        self.lost = 0

    def __call__(self, connection: int, to_client: bool, chunk: bytes) -> Verdict:
        if to_client:
            if connection in self.committing:
                self.committing.discard(connection)
                self.lost += 1
                return Verdict.RESET
            return Verdict.FORWARD
        query = chunk[5:] if len(chunk) > 5 and chunk[4] == COM_QUERY else b""
        if query.startswith(b"INSERT INTO workflow_events") and self.armed.is_set():
            self.recording.add(connection)
        elif query == b"COMMIT" and connection in self.recording:
            self.recording.discard(connection)
            self.committing.add(connection)
        return Verdict.FORWARD


@pytest.fixture
def lossy(mariadb_url: str) -> Iterator[tuple[str, LoseCommitReplies]]:
    """The session's MariaDB test database through a proxy losing COMMIT replies."""
    script = LoseCommitReplies()
    upstream = make_url(mariadb_url)
    proxy = ChaosProxy(upstream.host or "127.0.0.1", upstream.port or 3306, script=script)
    proxy.start()
    try:
        yield upstream.set(port=proxy.port).render_as_string(hide_password=False), script
    finally:
        proxy.stop()


async def test_a_write_whose_commit_reply_was_lost_is_reported_done(
    lossy: tuple[str, LoseCommitReplies], make_engine: Callable[..., Any]
) -> None:
    url, script = lossy
    engine: Engine = make_engine(url, step_modules=["stepmods.basic"])
    name = f"lost-reply-{threading.get_ident()}"

    script.armed.set()
    created = await engine.create_workflow(name, {}, ["noop", "noop"], queue="lost-reply")
    paused = await engine.pause(name, reason="lost reply")
    script.armed.clear()

    assert script.lost == 2
    assert created.state is WorkflowState.PENDING
    assert paused.state is WorkflowState.PAUSED
    kinds = [event.kind for event in await engine.history(name)]
    assert kinds == ["created", "paused"]
