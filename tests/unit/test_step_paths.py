"""`[steps] paths`: directories of a user's own step modules, from the config only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wfed.config import load_config
from wfed.errors import ConfigError
from wfed.steps.registry import StepRegistry

_MODULE = """
from wfed import step

@step("{name}")
async def run(ctx):
    ctx["{name}"] = True
"""


def _write_module(directory: Path, module: str, step_name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(_MODULE.format(name=step_name))


def test_a_module_in_a_configured_directory_is_registered(tmp_path: Path) -> None:
    """A module found only in a `[steps] paths` directory is imported and its steps
    registered."""
    _write_module(tmp_path / "runbooks", "wfed_paths_mod_a", "paths_step_a")
    try:
        registry = StepRegistry.from_modules(
            ["wfed_paths_mod_a"], paths=[str(tmp_path / "runbooks")]
        )
    finally:
        sys.modules.pop("wfed_paths_mod_a", None)
    assert "paths_step_a" in registry


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    """A relative directory in `[steps] paths` is resolved against the config file's
    directory, not the working directory."""
    config_file = tmp_path / "etc" / "config.toml"
    config_file.parent.mkdir()
    config_file.write_text('[steps]\nmodules = []\npaths = ["runbooks"]\n')
    config = load_config(config_file)
    assert config.steps.paths == [str(tmp_path / "etc" / "runbooks")]


def test_a_path_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    """A `[steps] paths` entry that is not a directory is a ConfigError naming it."""
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"\[steps\] paths: .*nowhere.* is not a directory"):
        StepRegistry.from_modules([], paths=[missing])
