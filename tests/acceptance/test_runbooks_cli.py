"""`wfectl run FILE` and `wfectl runbook lint DIR`: the real executable, on every backend."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wfed import Engine, WorkflowState

from .conftest import NO_DATABASE, Result, Wfectl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "maintenance.toml"

RUNBOOK = """\
# A runbook of the tests: parameters of every type, and the example steps.
name = "rb-{{app}}-{{date}}-{{random}}"
description = "restart an app"
queue = "{queue}"
priority = 3

[params.app]
type = "string"
choices = ["billing", "search"]

[params.servers]
type = "list"
default = ["web1", "web2"]

[params.count]
type = "int"
default = 2

[params.ratio]
type = "float"
default = 0.5

[params.dry]
type = "bool"
default = false

[context]
target_servers = "{{servers}}"
app = "{{app}}"
count = "{{count}}"
ratio = "{{ratio}}"
dry = "{{dry}}"
cmd = "echo {{app}}"

[[steps]]
step = "sleep"
label = "a moment"
args = {{ seconds = 0 }}

[[steps]]
step = "shell"
args = {{ cmd = ["echo", "{{app}}", "{{count}}"], save_as = "echoed" }}
"""


def refused(result: Result, *fragments: str) -> str:
    """Exit code 1, one `wfectl: …` line on stderr, nothing on stdout; that line."""
    assert result.code == 1, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("wfectl: "), result
    for fragment in fragments:
        assert fragment in lines[0], result
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_inline(url: str, name: str) -> WorkflowState:
    """Run a workflow in this process (no daemon here)."""

    async def main() -> WorkflowState:
        async with Engine(url, step_modules=["wfed.examples"]) as engine:
            return (await engine.run(name)).state

    return asyncio.run(main())


def test_a_runbook_with_parameters_runs_end_to_end(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """`run FILE --param …` enqueues the rendered row (typed parameters, defaults, name
    pattern, queue and priority of the file); it runs to completion, and `history` shows
    the file's path and sha256 and the parameters in its first event."""
    queue = f"q-{unique}"
    path = write(tmp_path / "restart.toml", RUNBOOK.format(queue=queue))
    result = wfectl(
        "run", str(path), "--param", "app=search", "--param", "count=5", "--param", "dry=yes"
    )
    assert result.code == 0, result
    assert result.err == ""
    assert result.out.startswith("created rb-search-"), result
    assert f"from {path}: 2 steps, queue {queue}, priority 3" in result.out
    [listed] = wfectl("list", "--queue", queue, "--json").json()
    name = listed["name"]
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert name.startswith(f"rb-search-{today}-") or name.startswith("rb-search-"), name
    assert listed["priority"] == 3
    workflow = wfectl("show", name, "--json").json()
    assert workflow["context"] == {
        "target_servers": ["web1", "web2"],
        "app": "search",
        "count": 5,
        "ratio": 0.5,
        "dry": True,
        "cmd": "echo search",
    }
    assert run_inline(wfectl.url, name) is WorkflowState.COMPLETED
    shown, history = wfectl.many([["show", name, "--json"], ["history", name, "--json"]])
    assert shown.json()["context"]["echoed"]["stdout"] == "search 5\n"
    created = history.json()[0]
    assert created["kind"] == "created"
    assert created["detail"]["runbook"] == str(path.resolve())
    assert created["detail"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert created["detail"]["params"] == {
        "app": "search",
        "servers": ["web1", "web2"],
        "count": 5,
        "ratio": 0.5,
        "dry": True,
    }


def test_name_queue_and_after_given_on_the_command_line(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """--name, --queue and --after override the file's pattern, queue and `run_after`;
    a list parameter is given as items separated by commas or as a JSON list."""
    path = write(tmp_path / "restart.toml", RUNBOOK.format(queue="never-used"))
    queue = f"q-{unique}"
    first, second = wfectl.many(
        [
            [
                "run", str(path), "--param", "app=billing", "--param", "servers=a, b",
                "--name", f"rb-{unique}-1", "--queue", queue, "--after", "+1h",
            ],
            [
                "run", str(path), "--param", "app=billing", "--param", 'servers=["c"]',
                "--name", f"rb-{unique}-2", "--queue", queue,
                "--after", "2099-01-01T10:00:00+02:00",
            ],
        ]
    )  # fmt: skip
    assert first.code == 0, first
    assert second.code == 0, second
    assert "runs after" in first.out
    one, two = (
        result.json()
        for result in wfectl.many(
            [["show", f"rb-{unique}-1", "--json"], ["show", f"rb-{unique}-2", "--json"]]
        )
    )
    assert one["queue"] == two["queue"] == queue
    assert one["context"]["target_servers"] == ["a", "b"]
    assert two["context"]["target_servers"] == ["c"]
    after = datetime.fromisoformat(one["run_after"].removesuffix("Z"))
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    assert abs((after - expected).total_seconds()) < 120
    assert two["run_after"] == "2099-01-01T08:00:00.000Z"


def test_dry_run_shows_the_plan_and_writes_nothing(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """--dry-run validates the file and parameters and prints the plan, with no
    database needed; nothing is written."""
    queue = f"q-{unique}"
    path = write(tmp_path / "restart.toml", RUNBOOK.format(queue=queue))
    no_database = Wfectl(NO_DATABASE, wfectl.config)
    dry, example = no_database.many(
        [
            ["run", str(path), "--param", "app=search", "--dry-run"],
            ["run", str(EXAMPLE), "--param", "servers=intweb1", "--dry-run"],
        ]
    )
    assert dry.code == 0, dry
    assert f"would get 2 steps, queue {queue}, priority 3; nothing was written" in dry.out
    assert "a moment" in dry.out
    assert "echo search" in dry.out
    assert example.code == 0, example
    assert "would get 4 steps" in example.out
    assert "run the maintenance command" in example.out
    assert wfectl("list", "--queue", queue, "--json").json() == []


def test_dry_run_refuses_a_taken_name(wfectl: Wfectl, unique: str, tmp_path: Path) -> None:
    """A dry run with the database at hand refuses the name the run would be refused."""
    queue, name = f"q-{unique}", f"rb-taken-{unique}"
    path = write(tmp_path / "restart.toml", RUNBOOK.format(queue=queue))
    created = wfectl("run", str(path), "--param", "app=search", "--name", name)
    assert created.code == 0, created
    dry = wfectl("run", str(path), "--param", "app=search", "--name", name, "--dry-run")
    refused(dry, f"a workflow named '{name}' already exists")


def test_dry_run_names_the_keys_and_windows_it_would_take(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """A runbook's concurrency keys (its references rendered) and windows are in the
    dry run's summary, as `create --dry-run` gives them."""
    keyed = RUNBOOK.format(queue=f"q-{unique}").replace(
        "priority = 3\n",
        'priority = 3\nlocks = ["app:{app}"]\nwindows = ["sat 02:00-05:00 UTC"]\n',
    )
    path = write(tmp_path / "keyed.toml", keyed)
    dry = Wfectl(NO_DATABASE, wfectl.config)("run", str(path), "--param", "app=search", "--dry-run")
    assert dry.code == 0, dry
    assert "keys app:search, in 1 window (sat 02:00-05:00 UTC); nothing was written" in dry.out


def test_each_bad_file_or_parameter_is_one_line_and_writes_nothing(
    wfectl: Wfectl, unique: str, tmp_path: Path
) -> None:
    """Each kind of bad runbook or parameter: exit code 1, one line naming the file (and
    its line, or the field), and no workflow written."""
    queue = f"q-{unique}"
    good = RUNBOOK.format(queue=queue)
    files = {
        "syntax": write(tmp_path / "syntax.toml", good.replace('type = "int"', "type = int")),
        "unknown-key": write(tmp_path / "unknown-key.toml", good + "colour = 'blue'\n"),
        "unknown-step": write(
            tmp_path / "unknown-step.toml", good.replace('step = "sleep"', 'step = "slep"')
        ),
        "bad-default": write(
            tmp_path / "bad-default.toml", good.replace("default = 2", 'default = "two"')
        ),
        "bad-args": write(
            tmp_path / "bad-args.toml", good.replace("seconds = 0", "seconds = 0, naps = 2")
        ),
        "json": write(tmp_path / "broken.json", '{\n  "name": "x",\n  "steps": [,]\n}\n'),
        "good": write(tmp_path / "good.toml", good),
    }
    missing = tmp_path / "missing.toml"
    cases = [
        (["run", str(files["syntax"]), "--param", "app=search"], files["syntax"], ":16:"),
        (["run", str(files["unknown-key"]), "--param", "app=search"], files["unknown-key"],
         "colour: unknown key"),
        (["run", str(files["unknown-step"]), "--param", "app=search"], files["unknown-step"],
         "unknown step 'slep'"),
        (["run", str(files["bad-default"]), "--param", "app=search"], files["bad-default"],
         "params.count.default: parameter 'count' must be an int"),
        (["run", str(files["bad-args"]), "--param", "app=search"], files["bad-args"], "naps"),
        (["run", str(files["json"])], files["json"], ":3: not valid JSON"),
        (["run", str(missing)], missing, "no such file"),
        (["run", str(files["good"])], files["good"], "missing parameter 'app'"),
        (["run", str(files["good"]), "--param", "app=search", "--param", "count=many"],
         files["good"], "'many' is not an int"),
        (["run", str(files["good"]), "--param", "app=payroll"], files["good"],
         "parameter 'app' must be one of \"billing\", \"search\""),
        (["run", str(files["good"]), "--param", "app=search", "--param", "dry=maybe"],
         files["good"], "'maybe' is not a bool"),
        (["run", str(files["good"]), "--param", "app=search", "--param", "colour=red"],
         files["good"], "unknown parameter 'colour'"),
        (["run", str(files["good"]), "--param", "app=search", "--param", "servers=[1"],
         files["good"], "does not parse"),
    ]  # fmt: skip
    results = wfectl.many([args for args, _, _ in cases])
    for (_, path, fragment), result in zip(cases, results, strict=True):
        line = refused(result, fragment)
        assert line.startswith(f"wfectl: {path.name}") or str(path) in line, result
        assert str(path.resolve()) in line or str(path) in line, result
    malformed = wfectl("run", str(files["good"]), "--param", "app")
    assert malformed.code == 2, malformed
    assert "NAME=VALUE" in malformed.err
    assert wfectl("list", "--queue", queue, "--json").json() == []


def test_lint_reports_one_line_per_problem(wfectl: Wfectl, unique: str, tmp_path: Path) -> None:
    """`runbook lint DIR`: exit code 0 and a count when every file is good (the example
    runbooks are); else one line per bad file, naming it, and exit code 1 — a reference
    in the name or context to no parameter too. No database."""
    good = tmp_path / "good"
    (good / "nested").mkdir(parents=True)
    write(good / "restart.toml", RUNBOOK.format(queue="q"))
    write(good / "nested" / "again.json", json.dumps({"name": "x", "steps": ["stop_app"]}))
    write(good / "README.md", "not a runbook")
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad / "fine.toml", RUNBOOK.format(queue="q"))
    write(bad / "slep.toml", RUNBOOK.format(queue="q").replace('"sleep"', '"slep"'))
    write(bad / "syntax.toml", "name = \n")
    write(bad / "empty.json", "{}")
    write(
        bad / "typo.toml", RUNBOOK.format(queue="q").replace('cmd = "echo {app}"', 'cmd = "{ap}"')
    )
    no_database = Wfectl(NO_DATABASE, wfectl.config)
    passed, examples, failed, missing = no_database.many(
        [
            ["runbook", "lint", str(good)],
            ["runbook", "lint", str(EXAMPLE.parent)],
            ["runbook", "lint", str(bad)],
            ["runbook", "lint", str(tmp_path / "nowhere")],
        ]
    )
    assert passed.code == 0, passed
    assert passed.out == f"2 runbook files under {good}: no problems\n"
    assert examples.code == 0, examples
    assert failed.code == 1, failed
    lines = failed.out.splitlines()
    assert len(lines) == 4, failed
    by_file = {line.split(":")[0]: line for line in lines}
    assert "unknown step 'slep'" in by_file[str(bad / "slep.toml")]
    assert by_file[str(bad / "syntax.toml")].startswith(f"{bad / 'syntax.toml'}:1: not valid TOML")
    assert "name: missing" in by_file[str(bad / "empty.json")]
    assert by_file[str(bad / "typo.toml")] == (
        f"{bad / 'typo.toml'}: context.cmd: {{ap}} is neither a parameter nor date, time, "
        "random (parameters: app, count, dry, ratio, servers)"
    )
    assert "Traceback" not in failed.err
    assert missing.code == 2, missing
