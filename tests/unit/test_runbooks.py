"""Runbook files: parsing, parameters, and one clear message per problem."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from wfed.engine.runbooks import InvalidRunbook, enqueue, load_runbook

NOW = datetime(2026, 11, 29, 2, 30, 0)
REPO = Path(__file__).resolve().parents[2]

GOOD = """
name = "maint-{app}-{date}"
queue = "maint"
priority = 5

[params.app]
type = "string"
choices = ["billing", "search"]

[params.servers]
type = "list"
default = ["intweb1"]

[params.count]
type = "int"
default = 2

[params.force]
type = "bool"
default = false

[params.ratio]
type = "float"
default = 0.5

[context]
app = "{app}"
servers = "{servers}"
count = "{count}"
force = "{force}"
ratio = "{ratio}"
label = "{app} on {servers}"

[[steps]]
step = "noop"
"""


def _write(tmp_path: Path, text: str, name: str = "runbook.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parameters_given_as_text_take_their_types(tmp_path: Path) -> None:
    """--param values are parsed by the parameter's type; defaults fill the rest; the
    context references keep the value's type, and the name pattern is rendered."""
    runbook = load_runbook(_write(tmp_path, GOOD))
    row = enqueue(
        runbook, {"app": "billing", "servers": "a, b", "count": "3", "force": "yes"}, now=NOW
    )
    assert row.name == "maint-billing-20261129"
    assert (row.queue, row.priority) == ("maint", 5)
    assert row.context == {
        "app": "billing",
        "servers": ["a", "b"],
        "count": 3,
        "force": True,
        "ratio": 0.5,
        "label": 'billing on ["a", "b"]',
    }
    assert row.steps == [{"step": "noop"}]
    assert row.provenance["sha256"] == runbook.sha256
    assert row.provenance["params"]["servers"] == ["a", "b"]
    assert row.provenance["runbook"] == str((tmp_path / "runbook.toml").resolve())


def test_a_json_runbook_is_read_too(tmp_path: Path) -> None:
    """A .json file with the same structure is a runbook too."""
    path = _write(tmp_path, '{"name": "j-{date}", "steps": ["noop"]}', "r.json")
    assert enqueue(load_runbook(path), {}, now=NOW).name == "j-20261129"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "missing parameter 'app'"),
        ({"app": "mail"}, 'parameter \'app\' must be one of "billing", "search"'),
        ({"app": "billing", "count": "many"}, "parameter 'count': 'many' is not an int"),
        ({"app": "billing", "force": "perhaps"}, "'perhaps' is not a bool"),
        ({"app": "billing", "colour": "red"}, "unknown parameter 'colour'"),
        ({"app": "billing", "servers": "[1, 2"}, "does not parse"),
    ],
)
def test_bad_parameters_are_named(tmp_path: Path, given: dict[str, str], message: str) -> None:
    """Each kind of bad parameter gives one message naming the file and the parameter."""
    path = _write(tmp_path, GOOD)
    with pytest.raises(InvalidRunbook) as caught:
        enqueue(load_runbook(path), given, now=NOW)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path.resolve()) + ":") or str(caught.value).startswith(
        str(path)
    )
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nsteps = ["noop"]\ncolour = 1\n', "colour: unknown key"),
        ('steps = ["noop"]\n', "name: missing"),
        ('name = "x"\nsteps = []\n', "steps:"),
        (
            'name = "x"\nsteps = ["noop"]\n[params.n]\ntype = "int"\ndefault = "two"\n',
            "must be an int",
        ),
        ('name = "x"\nsteps = ["noop"]\n[params.n]\ntype = "complex"\n', "params.n.type"),
        ('name = "x"\nsteps = ["noop"]\n[params.date]\n', "not one of date"),
        ('name = "x"\n\nsteps = ["noop"]\nthis is not toml\n', ":4: not valid TOML"),
    ],
)
def test_bad_files_are_named_with_the_field_or_line(
    tmp_path: Path, text: str, message: str
) -> None:
    """A bad file gives one message naming the file, the field, or the line TOML gives."""
    path = _write(tmp_path, text)
    with pytest.raises(InvalidRunbook) as caught:
        load_runbook(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """A runbook path that does not exist is said so."""
    with pytest.raises(InvalidRunbook, match="no such file"):
        load_runbook(tmp_path / "nope.toml")


def test_the_shipped_example_runbook_loads_with_its_defaults() -> None:
    """examples/maintenance.toml reads and enqueues with no parameters given."""
    row = enqueue(load_runbook(REPO / "examples" / "maintenance.toml"), {}, now=NOW)
    assert row.context["target_servers"] == ["intweb1", "intweb2"]
    assert [step["step"] for step in row.steps] == ["shell", "sleep", "shell", "shell"]
