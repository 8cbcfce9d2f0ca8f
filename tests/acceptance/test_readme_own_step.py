"""README, "Your own step in five minutes": its shell block, run as it is written in an
empty directory with wfed's venv on the PATH, writes a step module and a config, and a
real daemon runs the step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Your own step in five minutes"


def _block() -> str:
    """The section's first `sh` block."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0] + "\n"


def test_the_readmes_own_step_runs_as_written(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WFED_", "WFECTL_")) and key not in {"NO_COLOR", "FORCE_COLOR"}
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # -m: job control, for the block's `&` and `kill %1`; the trap stops the daemon also
    # when a command of the block fails before that.
    script = "trap 'kill %1 2>/dev/null || true' EXIT\n" + _block()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    done = run("bash", "-m", "-e", "-c", script)
    assert done.returncode == 0, done
    assert "greet" in done.stdout
    assert "hello, ops" in done.stdout
    shown = run(
        str(Path(sys.executable).parent / "wfectl"), "-c", "wfed.toml", "show", "hello-1", "--json"
    )
    assert shown.returncode == 0, shown
    workflow = json.loads(shown.stdout)
    assert workflow["state"] == "completed"
    assert workflow["context"] == {"greeting": "hello, ops"}
