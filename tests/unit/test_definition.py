"""Validation of a workflow definition and context (README, "Enqueue with SQL"): plans and
error messages."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field
from stepmods import typed

from wfed.errors import InvalidDefinition
from wfed.steps.base import step, step_class_of
from wfed.steps.definition import (
    CACHED_DEFINITION_CHARS,
    StepPlan,
    check_args,
    parse_context,
    parse_definition,
    parse_row_definition,
)
from wfed.steps.registry import StepRegistry
from wfed.steps.sleep import Sleep
from wfed.unreadable_json import UnreadableJson

ELEMENT_FIX = "each element is a step name or an object"


@pytest.fixture(scope="module")
def registry() -> StepRegistry:
    return StepRegistry.from_modules([typed.__name__])


def invalid(steps: Any, registry: StepRegistry) -> str:
    with pytest.raises(InvalidDefinition) as excinfo:
        parse_definition(steps, registry)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_string_elements(registry: StepRegistry) -> None:
    """A string element is a step with no arguments and the step class's policy."""
    plans = parse_definition(["no_args", "report", "sleep"], registry)
    assert [(p.position, p.name, p.args, p.label) for p in plans] == [
        (0, "no_args", {}, None),
        (1, "report", {}, None),
        (2, "sleep", {}, None),
    ]
    assert plans[0].step_class is step_class_of(typed.no_args)
    assert plans[1].step_class is typed.Report
    assert plans[2].step_class is Sleep


def test_object_element(registry: StepRegistry) -> None:
    """An object element carries its step, args and label into the plan."""
    args = {"app": "web", "servers": ["intweb1", "intweb2"], "force": True}
    (plan,) = parse_definition([{"step": "deploy", "args": args, "label": "deploy web"}], registry)
    assert plan.name == "deploy"
    assert plan.step_class is typed.Deploy
    assert plan.args == args
    assert plan.label == "deploy web"
    assert plan.title == "step 0 'deploy' (deploy web)"


def test_title_without_label(registry: StepRegistry) -> None:
    """A plan without a label is named by position and step name."""
    plans = parse_definition(["no_args", "sleep"], registry)
    assert plans[1].title == "step 1 'sleep'"


def policy(plan: StepPlan) -> tuple[Any, ...]:
    return (plan.retries, plan.retry_delay, plan.backoff, plan.timeout, plan.idempotent)


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ("report", (0, 0.0, 1.0, None, False)),
        ("sleep", (0, 0.0, 1.0, None, True)),
        ("inherit", (1, 0.25, 1.0, None, False)),
        (
            {"step": "deploy", "args": {"app": "a", "servers": []}},
            (3, 2.0, 2.0, 60.0, True),
        ),
        ({"step": "record", "args": {"key": "k"}}, (2, 0.5, 3.0, 9.0, True)),
    ],
    ids=["class-defaults", "builtin", "inherited", "class-options", "function-options"],
)
def test_policy_from_step_class(
    registry: StepRegistry, element: Any, expected: tuple[Any, ...]
) -> None:
    """Without overrides a plan takes its retry policy, timeout and idempotent from the step."""
    (plan,) = parse_definition([element], registry)
    assert policy(plan) == expected


def test_policy_overrides(registry: StepRegistry) -> None:
    """Element options override the step class, including falsy values (0, false)."""
    element = {
        "step": "deploy",
        "args": {"app": "a", "servers": []},
        "retries": 0,
        "retry_delay": 5,
        "backoff": 1.5,
        "timeout": 600,
        "idempotent": False,
    }
    (plan,) = parse_definition([element], registry)
    assert policy(plan) == (0, 5.0, 1.5, 600.0, False)
    assert isinstance(plan.retry_delay, float)
    assert isinstance(plan.timeout, float)


def test_policy_override_on_defaults(registry: StepRegistry) -> None:
    """Element options also apply to a step that has none of its own."""
    element = {"step": "report", "retries": 2, "retry_delay": 0.5, "idempotent": True}
    (plan,) = parse_definition([element], registry)
    assert policy(plan) == (2, 0.5, 1.0, None, True)


def test_design_example_element(registry: StepRegistry) -> None:
    """The object form of a steps element (integer seconds, label) is accepted."""
    element = {
        "step": "anything",
        "args": {"argv": ["logrotate", "-f"]},
        "label": "rotate logs",
        "retries": 2,
        "retry_delay": 5,
        "timeout": 600,
    }
    (plan,) = parse_definition([element], registry)
    assert (plan.label, plan.retries, plan.retry_delay, plan.timeout) == (
        "rotate logs",
        2,
        5.0,
        600.0,
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ({"step": "sleep"}, "got an object"),
        ("sleep", "got a string"),
        # JSON text stored in the column decodes to a string: it is not parsed again.
        ('["sleep"]', "got a string"),
        (5, "got a number"),
        (1.5, "got a number"),
        (None, "got null"),
        (True, "got a boolean"),
    ],
)
def test_not_a_list(registry: StepRegistry, steps: Any, expected: str) -> None:
    """A definition that is not a list says what it got and that a JSON list is expected."""
    message = invalid(steps, registry)
    assert expected in message
    assert "list" in message


@pytest.mark.parametrize("steps", [[]])
def test_empty_list(registry: StepRegistry, steps: Any) -> None:
    """An empty definition is refused: a workflow needs at least one step."""
    assert "at least one step" in invalid(steps, registry)


@pytest.mark.parametrize("element", [5, 1.5, None, True, ["sleep"]])
def test_element_of_wrong_type(registry: StepRegistry, element: Any) -> None:
    """An element that is neither a name nor an object names its index and the accepted forms."""
    message = invalid(["no_args", element], registry)
    assert message.startswith("steps[1]")
    assert ELEMENT_FIX in message


def test_unknown_step_lists_registered_names(registry: StepRegistry) -> None:
    """An unknown step names the element, the name, every registered step and the config key."""
    message = invalid(["no_args", "sleep", {"step": "stop_ap"}], registry)
    assert message.startswith("steps[2]")
    assert "'stop_ap'" in message
    for name in registry.names():
        assert name in message
    assert "[steps] modules" in message


@pytest.mark.parametrize(
    ("element", "key", "problem"),
    [
        ({"step": "sleep", "argz": {}}, "argz", "unknown key"),
        ({"step": "sleep", "retries": -1}, "retries", "greater than or equal to 0"),
        ({"step": "sleep", "retries": True}, "retries", "integer"),
        ({"step": "sleep", "retries": "2"}, "retries", "integer"),
        ({"step": "sleep", "retries": 1.5}, "retries", "integer"),
        ({"step": "sleep", "retry_delay": -1}, "retry_delay", "greater than or equal to 0"),
        ({"step": "sleep", "retry_delay": True}, "retry_delay", "number"),
        ({"step": "sleep", "retry_delay": "5"}, "retry_delay", "number"),
        ({"step": "sleep", "backoff": 0.5}, "backoff", "greater than or equal to 1"),
        ({"step": "sleep", "timeout": 0}, "timeout", "greater than 0"),
        ({"step": "sleep", "idempotent": 1}, "idempotent", "boolean"),
        ({"step": "sleep", "idempotent": "true"}, "idempotent", "boolean"),
        ({"step": "sleep", "label": 5}, "label", "string"),
        ({"step": "sleep", "args": ["seconds", 1]}, "args", "dictionary"),
        ({"step": "sleep", "args": None}, "args", "dictionary"),
        ({"args": {}}, "step", "missing"),
        ({"step": ""}, "step", "at least 1"),
        ({"step": 5}, "step", "string"),
    ],
)
def test_bad_element_keys(
    registry: StepRegistry, element: dict[str, Any], key: str, problem: str
) -> None:
    """A bad key of an object element names steps[i].key, the problem and the accepted form."""
    message = invalid(["no_args", element], registry)
    assert message.startswith(f"steps[1].{key}")
    assert problem in message
    assert ELEMENT_FIX in message


def test_unknown_argument_lists_accepted(registry: StepRegistry) -> None:
    """An unknown argument names the element, the argument and the accepted ones."""
    message = invalid(
        [{"step": "deploy", "args": {"app": "a", "servers": [], "fast": 1}}], registry
    )
    assert message.startswith("steps[0]")
    assert "'fast'" in message
    assert "accepted: app, servers, force" in message


def test_unknown_argument_for_a_step_without_arguments(registry: StepRegistry) -> None:
    """A step with no arguments refuses any, saying none are accepted."""
    message = invalid(["sleep", {"step": "no_args", "args": {"x": 1}}], registry)
    assert message.startswith("steps[1]")
    assert "'x'" in message
    assert "accepted: none" in message


def test_context_is_not_an_argument(registry: StepRegistry) -> None:
    """`ctx` cannot be passed as an argument: the step always gets the workflow's context."""
    message = invalid([{"step": "notify", "args": {"message": "hi", "ctx": {}}}], registry)
    assert "unknown argument 'ctx'" in message


@pytest.mark.parametrize(
    ("element", "missing"),
    [
        ({"step": "notify"}, "message"),
        ({"step": "notify", "args": {"count": 2}}, "message"),
        ("record", "key"),
        ({"step": "deploy", "args": {"app": "a"}}, "servers"),
        ("ping", "server"),
    ],
)
def test_missing_required_argument(registry: StepRegistry, element: Any, missing: str) -> None:
    """A required argument left out names the element and the argument."""
    message = invalid(["sleep", element], registry)
    assert message.startswith("steps[1]")
    assert f"missing argument {missing!r}" in message


@pytest.mark.parametrize(
    ("element", "argument", "shown"),
    [
        ({"step": "sleep", "args": {"seconds": "abc"}}, "seconds", '"abc"'),
        ({"step": "sleep", "args": {"seconds": [1]}}, "seconds", "[1]"),
        ({"step": "notify", "args": {"message": 5}}, "message", "5"),
        ({"step": "notify", "args": {"message": "m", "count": 1.5}}, "count", "1.5"),
        ({"step": "notify", "args": {"message": "m", "count": "two"}}, "count", '"two"'),
        ({"step": "deploy", "args": {"app": "a", "servers": "intweb1"}}, "servers", '"intweb1"'),
        ({"step": "deploy", "args": {"app": "a", "servers": [1]}}, "servers", "[1]"),
        ({"step": "deploy", "args": {"app": "a", "servers": [], "force": "x"}}, "force", '"x"'),
    ],
)
def test_wrong_argument_type(
    registry: StepRegistry, element: dict[str, Any], argument: str, shown: str
) -> None:
    """An argument of the wrong type names the element, the argument and the value given."""
    message = invalid(["no_args", element], registry)
    assert message.startswith(f"steps[1] ({element['step']})")
    assert f"argument {argument!r}" in message
    assert shown in message


@pytest.mark.parametrize(
    "element",
    [
        {"step": "sleep", "args": {"seconds": "{delay}"}},
        {"step": "sleep", "args": {"seconds": "{delays[0]}"}},
        {"step": "sleep", "args": {"seconds": "{n}0"}},
        {"step": "deploy", "args": {"app": "{app}", "servers": "{target_servers}"}},
        {"step": "deploy", "args": {"app": "a", "servers": ["{primary}", "{db.host}"]}},
        {"step": "notify", "args": {"message": "m", "count": "{count}"}},
    ],
)
def test_context_reference_accepted_at_definition_time(
    registry: StepRegistry, element: dict[str, Any]
) -> None:
    """An argument holding a context reference is not type-checked until it is rendered."""
    (plan,) = parse_definition([element], registry)
    assert plan.args == element["args"]


def test_rendered_arguments_are_checked() -> None:
    """With rendered=True the values are type-checked (and coerced) as the step declares."""
    assert check_args(Sleep, {"seconds": "2.5"}, "step 0 'sleep'", rendered=True) == {
        "seconds": 2.5
    }
    with pytest.raises(InvalidDefinition, match=r"^step 0 'sleep': argument 'seconds'"):
        check_args(Sleep, {"seconds": "{not rendered}"}, "step 0 'sleep'", rendered=True)


def test_open_ended_step_accepts_any_argument(registry: StepRegistry) -> None:
    """A step whose run takes **args accepts any argument names and values."""
    args = {"anything": 1, "else": ["x"], "nested": {"a": None}}
    (plan,) = parse_definition([{"step": "anything", "args": args}], registry)
    assert plan.args == args


def test_argument_type_pydantic_cannot_check(registry: StepRegistry) -> None:
    """An argument typed with a plain class is accepted unchecked, not a crash."""
    (plan,) = parse_definition([{"step": "ping", "args": {"server": "intweb1"}}], registry)
    assert plan.args == {"server": "intweb1"}
    step_class = registry.get("ping")
    assert step_class is not None
    assert check_args(step_class, {"server": "intweb1"}, "ping", rendered=True) == {
        "server": "intweb1"
    }


def test_first_bad_element_is_reported(registry: StepRegistry) -> None:
    """With several bad elements, the message names the first one."""
    assert invalid(["no_args", "nope", 5], registry).startswith("steps[1]")


def test_context_none_is_empty() -> None:
    """A NULL context is an empty object."""
    assert parse_context(None) == {}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"target_servers": ["intweb1"], "n": 1}, {"target_servers": ["intweb1"], "n": 1}),
        ({}, {}),
        (None, {}),
        ({"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)
def test_context_object(context: Any, expected: dict[str, Any]) -> None:
    """A JSON object is the context; NULL (a plain INSERT without it) is empty."""
    assert parse_context(context) == expected


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ([1, 2], "got a list"),
        ("text", "got a string"),
        ('{"a": 1}', "got a string"),
        (5, "got a number"),
        (True, "got a boolean"),
    ],
)
def test_context_not_an_object(context: Any, expected: str) -> None:
    """A context that is not a JSON object is InvalidDefinition saying an object is expected."""
    with pytest.raises(InvalidDefinition) as excinfo:
        parse_context(context)
    message = str(excinfo.value)
    assert message.startswith("context")
    assert expected in message
    assert "object" in message


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (-5, "greater than or equal to 0"),
        (1e30, "less than or equal to 604800"),
        ("nan", "finite number"),
        ("inf", "finite number"),
    ],
)
def test_sleep_takes_a_finite_wait_of_at_most_a_week(seconds: Any, words: str) -> None:
    """`sleep` refuses what it cannot wait (a negative or non-finite number) and what a
    backend may not store as written (1e30: PostgreSQL's jsonb makes it a 31-digit
    integer), whether written in the definition or rendered from the context."""
    for rendered in (False, True):
        with pytest.raises(InvalidDefinition, match=words):
            check_args(Sleep, {"seconds": seconds}, "step 0 'sleep'", rendered=rendered)
    assert check_args(Sleep, {"seconds": 604800}, "step 0 'sleep'") == {"seconds": 604800}


def test_a_constraint_annotated_on_a_step_argument_is_checked() -> None:
    """A step may constrain an argument with `Annotated[int, Field(...)]`: the constraint
    is checked like the type."""

    @step("annotated_probe")
    def probe(ctx: dict[str, Any], count: Annotated[int, Field(ge=1, le=10)] = 1) -> None:
        return None

    step_class = step_class_of(probe)
    assert step_class is not None
    assert check_args(step_class, {"count": 3}, "step 0") == {"count": 3}
    with pytest.raises(InvalidDefinition, match="less than or equal to 10"):
        check_args(step_class, {"count": 11}, "step 0")


# -- a row's definition: plans kept for the next row with the same definition ---------


def test_a_row_definition_seen_before_reuses_its_plans(registry: StepRegistry) -> None:
    first = parse_row_definition(
        ["no_args", {"step": "notify", "args": {"message": "m"}}], registry
    )
    again = parse_row_definition(
        ["no_args", {"step": "notify", "args": {"message": "m"}}], registry
    )
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))
    again.append(first[0])  # the caller's list is its own
    assert (
        len(
            parse_row_definition(
                ["no_args", {"step": "notify", "args": {"message": "m"}}], registry
            )
        )
        == 2
    )


def test_row_definitions_that_differ_in_json_are_not_confused(registry: StepRegistry) -> None:
    # 1, 1.0 and true are equal (and hash alike) in Python, not in JSON: each row gets
    # the plans of its own definition.
    for count in (1, 1.0, True, 1, True):
        steps = [{"step": "anything", "args": {"count": count}}]
        (plan,) = parse_row_definition(steps, registry)
        assert type(plan.args["count"]) is type(count)


def test_an_invalid_row_definition_is_refused_every_time(registry: StepRegistry) -> None:
    steps = ["no_args", "nope"]
    assert invalid_row(steps, registry) == invalid(steps, registry)
    assert invalid_row(steps, registry) == invalid(steps, registry)


def test_a_row_definition_that_is_not_a_list_keeps_its_message(registry: StepRegistry) -> None:
    unreadable = UnreadableJson("{oops")
    assert invalid_row(unreadable, registry) == invalid(unreadable, registry)
    assert "not valid JSON" in invalid_row(unreadable, registry)


def test_a_huge_row_definition_is_validated_as_it_is(registry: StepRegistry) -> None:
    big = [{"step": "notify", "args": {"message": "x" * CACHED_DEFINITION_CHARS}}]
    assert parse_row_definition(big, registry)[0].args["message"] == "x" * CACHED_DEFINITION_CHARS
    assert parse_row_definition(big, registry)[0] is not parse_row_definition(big, registry)[0]


def invalid_row(steps: Any, registry: StepRegistry) -> str:
    with pytest.raises(InvalidDefinition) as excinfo:
        parse_row_definition(steps, registry)
    return str(excinfo.value)
