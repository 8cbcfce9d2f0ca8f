"""A wfed logger keeps what it resolved to only while structlog's configuration stands."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from wfed.logging import get_logger


@pytest.fixture
def restored_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    configured = structlog.is_configured()
    try:
        yield
    finally:
        if configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def _configure_into(stream: io.StringIO) -> None:
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.PrintLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )


@pytest.mark.usefixtures("restored_structlog")
def test_a_logger_used_before_a_reconfiguration_follows_it() -> None:
    first, second = io.StringIO(), io.StringIO()
    log = get_logger("wfed.test").bind(workflow="w1")
    _configure_into(first)
    log.info("one")
    _configure_into(second)
    log.info("two")
    assert "event='one'" in first.getvalue()
    assert "two" not in first.getvalue()
    assert "event='two'" in second.getvalue()
    assert "workflow='w1'" in second.getvalue()


@pytest.mark.usefixtures("restored_structlog")
def test_captured_logs_reach_a_logger_resolved_before_the_capture() -> None:
    out = io.StringIO()
    log = get_logger("wfed.test").bind(workflow="w2")
    _configure_into(out)
    log.info("before")
    with capture_logs() as captured:
        log.info("during", n=1)
    log.info("after")
    assert [entry["event"] for entry in captured] == ["during"]
    assert captured[0]["workflow"] == "w2"
    assert "event='after'" in out.getvalue()
    assert "during" not in out.getvalue()
