"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """structlog's configuration and the root logger's handlers as they were before the
    test, for a test that configures logging."""
    saved = structlog.get_config()
    configured = structlog.is_configured()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        if configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
