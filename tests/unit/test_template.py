"""Context references in step arguments (docs/steps.md): rendering, lookups and their limits."""

from __future__ import annotations

from typing import Any

import pytest

from wfed.errors import InvalidDefinition
from wfed.steps.template import MissingReference, is_reference, lookup, references, render

CTX: dict[str, Any] = {
    "app": "billing",
    "port": 8080,
    "ratio": 0.5,
    "enabled": True,
    "servers": ["intweb1", "intweb2"],
    "db": {"host": "db1", "port": 3306, "replicas": [{"host": "db2"}, {"host": "db3"}]},
    "matrix": [[1, 2], [3, 4]],
    "my-key": "dashed",
    "_private": "underscore",
    "nothing": None,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{servers}", ["intweb1", "intweb2"]),
        ("{db}", CTX["db"]),
        ("{port}", 8080),
        ("{ratio}", 0.5),
        ("{enabled}", True),
        ("{nothing}", None),
        ("{app}", "billing"),
    ],
)
def test_whole_reference_keeps_type(template: str, expected: Any) -> None:
    """An argument that is exactly one reference takes the value with its JSON type."""
    result = render(template, CTX)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("app-{app}", "app-billing"),
        ("{app}:{port}", "billing:8080"),
        ("port {port} ratio {ratio}", "port 8080 ratio 0.5"),
        ("{db.host}:{db.port}", "db1:3306"),
        (" {app}", " billing"),
        ("servers={servers}", 'servers=["intweb1", "intweb2"]'),
        ("on={enabled}", "on=true"),
    ],
)
def test_partial_reference_formats_as_text(template: str, expected: str) -> None:
    """A reference inside a longer string is replaced by the value's text: a string as
    it is, anything else as its JSON."""
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("db.host", "db1"),
        ("servers[0]", "intweb1"),
        ("servers[1]", "intweb2"),
        ("db.replicas[1].host", "db3"),
        ("matrix[1][0]", 3),
        ("my-key", "dashed"),
        ("_private", "underscore"),
    ],
)
def test_nested_keys_and_indexes(path: str, expected: Any) -> None:
    """Dotted keys and [n] indexes are followed, both by lookup() and by render()."""
    assert lookup(CTX, path) == expected
    assert render("{" + path + "}", CTX) == expected
    assert render("<{" + path + "}>", CTX) == f"<{expected}>"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{app}}", "{app}"),
        ("{{", "{"),
        ("}}", "}"),
        ("{{{app}}}", "{billing}"),
        ("awk '{{print $1}}' {app}.log", "awk '{print $1}' billing.log"),
        ("${{HOME}}", "${HOME}"),
    ],
)
def test_brace_escapes(template: str, expected: str) -> None:
    """`{{` and `}}` are literal braces, and never start a reference."""
    assert render(template, CTX) == expected
    assert not is_reference(template)


@pytest.mark.parametrize(
    "template",
    ['{"json": 1}', "a { b", "a } b", "{}", "{1abc}", "{a b}", "{app()}", "{servers[-1]}"],
)
def test_non_references_are_left_alone(template: str) -> None:
    """Braces that do not hold a key path are kept literally; nothing is evaluated."""
    assert render(template, CTX) == template
    assert references(template) == []


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{missing}", "'missing'"),
        ("x-{missing}", "'missing'"),
        ("{db.user}", "'db.user'"),
        ("{db.host.name}", "'db.host.name'"),
        ("{servers[2]}", "'servers' has no item [2]"),
        ("{db.replicas[0].port}", "'db.replicas[0].port'"),
        ("{db[0]}", "'db' has no item [0]"),
        ("{app[0]}", "'app' has no item [0]"),
        ("{servers.first}", "'servers.first'"),
        ("{nothing.key}", "'nothing.key'"),
    ],
)
def test_missing_reference_names_the_path(template: str, named: str) -> None:
    """A missing key or index is MissingReference naming what is missing and the reference."""
    with pytest.raises(MissingReference) as excinfo:
        render(template, CTX)
    message = str(excinfo.value)
    assert named in message
    reference = template[template.index("{") :]
    assert reference in message


def test_missing_reference_is_an_invalid_definition() -> None:
    """MissingReference is an InvalidDefinition (a WfedError with the operator's message)."""
    assert issubclass(MissingReference, InvalidDefinition)


@pytest.mark.parametrize(
    "template",
    [
        "{__class__}",
        "{__dict__}",
        "{items}",
        "{app.__len__}",
        "{app.upper}",
        "{db.__class__}",
        "{db.keys}",
        "{servers.__len__}",
        "{servers.append}",
    ],
)
def test_no_attribute_access(template: str) -> None:
    """Names are dict keys only: attributes and methods of the values are never reached."""
    with pytest.raises(MissingReference):
        render(template, CTX)


def test_calls_and_expressions_are_not_evaluated() -> None:
    """Calls, format specs and expressions are not references, so nothing can run."""
    for template in ["{app.upper()}", "{port!r}", "{port:>10}", "{port + 1}", "{servers[0:1]}"]:
        assert render(template, CTX) == template


def test_recursion_into_lists_and_dicts() -> None:
    """Lists and objects are rendered item by item (keys are not), other values kept."""
    args = {
        "argv": ["ssh", "{servers[0]}", "systemctl restart {app}"],
        "env": {"PORT": "{port}", "NESTED": [{"DB": "{db.host}"}]},
        "{app}": "key not rendered",
        "retries": 3,
        "flag": False,
        "none": None,
    }
    assert render(args, CTX) == {
        "argv": ["ssh", "intweb1", "systemctl restart billing"],
        "env": {"PORT": 8080, "NESTED": [{"DB": "db1"}]},
        "{app}": "key not rendered",
        "retries": 3,
        "flag": False,
        "none": None,
    }


def test_render_does_not_modify_its_input() -> None:
    """Rendering returns new values; the argument template stays as written."""
    args = {"argv": ["{app}"], "n": "{port}"}
    render(args, CTX)
    assert args == {"argv": ["{app}"], "n": "{port}"}


def test_render_on_a_missing_nested_reference_fails_whole() -> None:
    """A missing reference deep in a list or object fails the whole render."""
    with pytest.raises(MissingReference, match="'absent'"):
        render({"a": ["ok {app}", {"b": "{absent}"}]}, CTX)


def test_is_reference() -> None:
    """is_reference() is true only for a string that is exactly one reference."""
    assert is_reference("{app}")
    assert is_reference("{db.replicas[0].host}")
    assert not is_reference("x{app}")
    assert not is_reference("{app}{port}")
    assert not is_reference("{{app}}")
    assert not is_reference(["{app}"])
    assert not is_reference(5)


def test_references_lists_every_path() -> None:
    """references() finds every path in strings, lists and objects, skipping escapes."""
    value = {"a": "{app}-{db.host}", "b": ["{servers[1]}", "{{literal}}"], "c": 1}
    assert references(value) == ["app", "db.host", "servers[1]"]
