"""The daemon's JSON lines: one JSON object per line, values JSON has no form for shown
by their own `__structlog__` rendering or their repr rather than failing the line."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest

from wfed.logging import configure_logging, get_logger


class _Rendered:
    def __structlog__(self) -> str:
        return "rendered by itself"


@pytest.mark.usefixtures("restored_logging")
def test_a_json_line_shows_values_json_cannot_hold() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = get_logger("wfed.test").bind(workflow="w1")

    log.info("first", at=datetime(2026, 1, 2, 3, 4, 5), own=_Rendered(), n=3)
    log.info("second", keys={"b"})
    log.debug("dropped")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["first", "second"]
    first, second = lines
    assert first["workflow"] == "w1"
    assert first["at"] == repr(datetime(2026, 1, 2, 3, 4, 5))
    assert first["own"] == "rendered by itself"
    assert first["n"] == 3
    assert first["level"] == "info"
    assert second["keys"] == "{'b'}"
