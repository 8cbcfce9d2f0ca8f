"""The Step API (README, "Writing steps"): @step functions, Step classes, options and where
steps run."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pytest
from stepmods import typed

from wfed import Step as PublicStep
from wfed import step as public_step
from wfed.steps.base import Context, PauseWorkflow, Step, step, step_class_of


def class_of(obj: object) -> type[Step]:
    step_class = step_class_of(obj)
    assert step_class is not None
    return step_class


def test_public_names() -> None:
    """`from wfed import Step, step` gives the Step API."""
    assert PublicStep is Step
    assert public_step is step


def test_decorator_returns_the_function_unchanged() -> None:
    """@step returns the very function it was given, which stays callable as before."""

    def original(ctx: Context, n: int = 1) -> int:
        ctx["n"] = n
        return n * 2

    decorated = step("unchanged_function")(original)
    assert decorated is original
    ctx: Context = {}
    assert decorated(ctx, n=4) == 8
    assert ctx == {"n": 4}


async def test_decorated_async_function_still_awaitable() -> None:
    """A decorated async function can still be awaited directly (e.g. in a unit test)."""
    ctx: Context = {}
    assert await typed.notify(ctx, "hi", count=2) == "hi x2"
    assert ctx["notified"] == ["hi", "hi"]
    assert typed.record(ctx, "k", 1) == "k"
    assert ctx["k"] == 1


def test_function_step_class() -> None:
    """The step class of a function carries its name, module and docstring's first line."""
    notify = class_of(typed.notify)
    assert issubclass(notify, Step)
    assert notify.name == "notify"
    assert notify.__module__ == typed.__name__
    assert notify.description == "Send a message (async function step)."
    assert class_of(typed.record).description == "Record a value in the context."


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (typed.notify, ["message", "count"]),
        (typed.record, ["key", "value"]),
        (typed.no_args, []),
        (typed.Deploy, ["app", "servers", "force"]),
        (typed.Report, ["path"]),
    ],
    ids=["async-function", "sync-function", "no-args", "async-class", "sync-class"],
)
def test_parameters_exclude_ctx(obj: object, expected: list[str]) -> None:
    """parameters() lists the step's arguments: never ctx (nor self for a class)."""
    params = class_of(obj).parameters()
    assert list(params) == expected
    assert all(isinstance(p, inspect.Parameter) for p in params.values())


def test_parameter_defaults_and_annotations() -> None:
    """parameters() keep defaults and annotations() resolves the declared types."""
    notify = class_of(typed.notify)
    assert notify.parameters()["message"].default is inspect.Parameter.empty
    assert notify.parameters()["count"].default == 1
    hints = notify.annotations()
    assert hints["message"] is str
    assert hints["count"] is int
    assert typed.Deploy.annotations()["servers"] == list[str]


def test_unresolvable_annotation_is_not_an_error() -> None:
    """A step whose annotations cannot be resolved still registers, with no type hints."""

    @step("unresolvable")
    def unresolvable(ctx: Context, value: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Its annotation names a type that does not exist."""

    assert class_of(unresolvable).annotations() == {}
    assert list(class_of(unresolvable).parameters()) == ["value"]


@pytest.mark.parametrize(
    ("obj", "args"),
    [(typed.record, {"key": "k", "value": 1}), (typed.Report, {"path": "x"})],
    ids=["function", "class"],
)
async def test_sync_step_runs_in_a_worker_thread(obj: object, args: dict[str, Any]) -> None:
    """A plain `def` step runs in a worker thread, never on the event loop's thread."""
    ctx: Context = {}
    await class_of(obj)().invoke(ctx, args)
    assert ctx["thread"] != threading.get_ident()


@pytest.mark.parametrize(
    ("obj", "args"),
    [(typed.notify, {"message": "m"}), (typed.Deploy, {"app": "a", "servers": ["s"]})],
    ids=["function", "class"],
)
async def test_async_step_runs_on_the_loop(obj: object, args: dict[str, Any]) -> None:
    """An async step runs on the event loop's thread."""
    ctx: Context = {}
    await class_of(obj)().invoke(ctx, args)
    assert ctx["thread"] == threading.get_ident()


async def test_sync_step_does_not_block_the_loop() -> None:
    """While a sync step blocks, other coroutines on the loop keep running."""
    release = threading.Event()
    ticks: list[int] = []

    @step("blocking")
    def blocking(ctx: Context) -> None:
        ctx["released"] = release.wait(timeout=5)

    async def ticker() -> None:
        for n in range(3):
            ticks.append(n)
            await asyncio.sleep(0)
        release.set()

    ctx: Context = {}
    await asyncio.gather(class_of(blocking)().invoke(ctx, {}), ticker())
    assert ctx["released"] is True
    assert ticks == [0, 1, 2]


async def test_invoke_passes_arguments_as_keywords() -> None:
    """invoke() calls the step with the context and the arguments as keyword arguments."""
    ctx: Context = {}
    await class_of(typed.Deploy)().invoke(ctx, {"servers": ["a", "b"], "app": "web"})
    assert ctx["deployed"] == {"app": "web", "servers": ["a", "b"], "force": False}
    await typed.Anything().invoke(ctx, {"x": 1, "y": [2]})
    assert ctx["args"] == {"x": 1, "y": [2]}


def _plain_wrapper(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


async def test_async_function_behind_a_sync_decorator_runs() -> None:
    """An async step wrapped by a plain decorator is still awaited, not silently skipped."""

    @step("wrapped")
    @_plain_wrapper
    async def wrapped(ctx: Context, value: int) -> None:
        await asyncio.sleep(0)
        ctx["value"] = value

    ctx: Context = {}
    await class_of(wrapped)().invoke(ctx, {"value": 7})
    assert ctx == {"value": 7}


async def test_step_exceptions_propagate() -> None:
    """An exception raised by a step (sync or async) comes out of invoke() unchanged."""

    @step("fails_sync")
    def fails_sync(ctx: Context) -> None:
        raise ValueError("sync failure")

    @step("fails_async")
    async def fails_async(ctx: Context) -> None:
        raise PauseWorkflow("approve please")

    with pytest.raises(ValueError, match="sync failure"):
        await class_of(fails_sync)().invoke({}, {})
    with pytest.raises(PauseWorkflow, match="approve please"):
        await class_of(fails_async)().invoke({}, {})


def test_class_options_are_read() -> None:
    """A class step's options (idempotent, retries, delays, backoff, timeout) are its own."""
    deploy = typed.Deploy
    assert deploy.name == "deploy"
    assert deploy.idempotent is True
    assert deploy.retries == 3
    assert deploy.retry_delay == 2.0
    assert deploy.backoff == 2.0
    assert deploy.timeout == 60.0
    assert deploy.description == "deploy an app"


def test_class_options_inherited_and_defaults() -> None:
    """Options come from a base class when not set, else Step's safe defaults."""
    assert (typed.Inherit.retries, typed.Inherit.retry_delay) == (1, 0.25)
    report = typed.Report
    assert report.idempotent is False
    assert (report.retries, report.retry_delay, report.backoff, report.timeout) == (
        0,
        0.0,
        1.0,
        None,
    )


def test_function_options_are_read() -> None:
    """@step options become the options of the function's step class; defaults otherwise."""
    record = class_of(typed.record)
    assert record.idempotent is True
    assert (record.retries, record.retry_delay, record.backoff, record.timeout) == (
        2,
        0.5,
        3.0,
        9.0,
    )
    notify = class_of(typed.notify)
    assert notify.idempotent is False
    assert (notify.retries, notify.retry_delay, notify.backoff, notify.timeout) == (
        0,
        0.0,
        1.0,
        None,
    )


def test_function_steps_do_not_share_options() -> None:
    """Each @step gets its own class: one function's options never leak to another."""
    assert class_of(typed.record) is not class_of(typed.notify)
    assert Step.retries == 0
    assert Step.idempotent is False


@pytest.mark.parametrize(
    "obj",
    [Step, typed._Base, typed.Server, len, "notify", None, lambda ctx: None],
    ids=["Step", "unnamed-base", "plain-class", "builtin", "string", "none", "lambda"],
)
def test_step_class_of_non_steps(obj: object) -> None:
    """step_class_of() finds no step in unnamed Step classes or unrelated objects."""
    assert step_class_of(obj) is None


def test_step_class_of_steps() -> None:
    """step_class_of() returns a named Step class itself, and a function's step class."""
    assert step_class_of(typed.Deploy) is typed.Deploy
    function_step = step_class_of(typed.notify)
    assert function_step is not None
    assert function_step.name == "notify"
