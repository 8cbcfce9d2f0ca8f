"""The `wfed` entry point: start-up runs with the garbage collector off, and every way
out of start-up leaves it on again (the daemon then runs for months with it)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from wfed.daemon.main import main


@pytest.fixture
def collector_restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


@pytest.mark.usefixtures("collector_restored")
def test_a_bad_config_is_one_line_and_leaves_the_collector_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\npoll_intervall = 1\n", encoding="utf-8")
    assert main(["--config", str(config)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("wfed: "), line
    assert "poll_intervall" in line, line
    assert gc.isenabled()
