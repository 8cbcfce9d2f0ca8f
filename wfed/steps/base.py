"""The Step API: a `Step` subclass, or a function decorated with `@step`.

A step receives the workflow's context (a dict, persisted as JSON when the step completes)
and its arguments as keyword arguments. Raising any exception fails the step; its policy
(`retries`, `retry_delay`, `backoff`, `timeout`, `idempotent`) decides what happens next.
Plain `def` steps run in a worker thread so they never block the event loop.

A step may also pass on live output while it runs (the `shell` step does, line by line):
`step_output()` is the sink of the running attempt, `emit()` writes lines to it. When
the engine records a run's output (`wfed.engine.output`) it attaches a sink to each
attempt and writes what it gets to the database; a step called directly (a test, a
script) has none, and its output goes nowhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast, get_type_hints

from wfed.steps.threads import run_in_thread

Context = dict[str, Any]

Stream = Literal["stdout", "stderr"]


class OutputSink(Protocol):
    """Where a running step's live output goes (`step_output()`)."""

    def write(self, stream: Stream, text: str) -> None:
        """Take one or more complete lines of `stream`, joined by "\n", without the last
        one's line end ("" is one empty line).

        It returns at once and never raises: the sink buffers, and writes elsewhere, on
        its own time; output it cannot keep is dropped, never the step held up. It may be
        called from a worker thread (a plain `def` step)."""


_output: contextvars.ContextVar[OutputSink | None] = contextvars.ContextVar(
    "wfed_step_output", default=None
)


def step_output() -> OutputSink | None:
    """The live-output sink of the step attempt running in this task (or thread), or None
    when nothing records output: then a step need not even split its output into lines."""
    return _output.get()


def emit(*lines: str, stream: Stream = "stdout") -> None:
    """Pass lines to the running step's live output; nothing happens if none is attached.
    A text with line ends in it counts as several lines (a final line end ends the last)."""
    sink = _output.get()
    if sink is not None and lines:
        sink.write(stream, "\n".join(line.removesuffix("\n") for line in lines))


@contextlib.contextmanager
def output_to(sink: OutputSink | None) -> Iterator[None]:
    """Attach `sink` as the live output of the steps run in this block, and of the tasks
    and threads started in it (they copy the context when they start). The engine does
    this for each attempt; a test may too."""
    token = _output.set(sink)
    try:
        yield
    finally:
        _output.reset(token)


class PauseWorkflow(Exception):
    """Raised by a step to complete and then pause its workflow (an approval gate).

    The context changes the step made are kept; `wfectl resume` continues with the next
    step. The message is shown as the reason the workflow halted.
    """


class Step:
    """Base class of class-based steps. Subclasses set `name` and implement `run`."""

    name: ClassVar[str] = ""
    idempotent: ClassVar[bool] = False
    """Safe to run again after an interruption (a crash mid-step); never assumed."""
    retries: ClassVar[int] = 0
    retry_delay: ClassVar[float] = 0.0
    backoff: ClassVar[float] = 1.0
    """Multiplier applied to `retry_delay` after each failed attempt."""
    timeout: ClassVar[float | None] = None
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "class"
    """How the step was written: "class" (a Step subclass) or "function" (`@step`)."""

    async def run(self, ctx: Context, **args: Any) -> None:
        raise NotImplementedError

    @classmethod
    def parameters(cls) -> dict[str, inspect.Parameter]:
        """The step's arguments: the parameters of `run` after the context."""
        return _arguments_of(cls.run, skip=2)

    @classmethod
    def annotations(cls) -> dict[str, Any]:
        return _resolved_hints(cls.run)

    @classmethod
    def is_idempotent(cls, args: dict[str, Any]) -> bool:
        """Whether a use of this step with these arguments (as written in the definition,
        possibly with unrendered context references) may be re-run after an interruption.
        The class's `idempotent` unless a step knows better (`http`: a GET is)."""
        return cls.idempotent

    @classmethod
    def check_arguments(cls, args: dict[str, Any]) -> None:
        """Check the arguments together, once each has passed its type check; raise
        ValueError naming the problem and the fix. It runs when a workflow is created or
        claimed, when values may still be context references (see
        `wfed.steps.template.is_reference`), and again once they are rendered."""

    async def invoke(self, ctx: Context, args: dict[str, Any]) -> None:
        """Run the step, in a worker thread when `run` is a plain function."""
        if inspect.iscoroutinefunction(self.run):
            await self.run(ctx, **args)
        else:
            sync_run = cast(Callable[..., Any], self.run)
            result = await run_in_thread(sync_run, ctx, **args)
            # An async function behind a plain (sync) decorator looks like a `def`: its
            # coroutine must still be awaited, or the step "completes" having done nothing.
            if inspect.isawaitable(result):
                await result


def _arguments_of(func: Callable[..., Any], skip: int) -> dict[str, inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())[skip:]
    return {p.name: p for p in params}


def _resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(func, include_extras=True)
    except (NameError, TypeError):
        # An annotation that cannot be resolved is not checked rather than refused.
        return {}


F = TypeVar("F", bound=Callable[..., Any])


def step(
    name: str,
    *,
    idempotent: bool = False,
    retries: int = 0,
    retry_delay: float = 0.0,
    backoff: float = 1.0,
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Register a function as a step: `@step("stop_app") async def stop_app(ctx): …`.

    The function is returned unchanged (it stays callable in tests); the step class built
    around it is found by the registry when its module is listed in `[steps] modules`.
    """

    def decorate(func: F) -> F:
        def run_function(self: Step, ctx: Context, **args: Any) -> Any:
            return func(ctx, **args)

        async def run_coroutine(self: Step, ctx: Context, **args: Any) -> None:
            await func(ctx, **args)

        run = run_coroutine if inspect.iscoroutinefunction(func) else run_function

        class FunctionStep(Step):
            @classmethod
            def parameters(cls) -> dict[str, inspect.Parameter]:
                return _arguments_of(func, skip=1)

            @classmethod
            def annotations(cls) -> dict[str, Any]:
                return _resolved_hints(func)

        FunctionStep.run = run  # type: ignore[method-assign]
        FunctionStep.name = name
        FunctionStep.idempotent = idempotent
        FunctionStep.retries = retries
        FunctionStep.retry_delay = retry_delay
        FunctionStep.backoff = backoff
        FunctionStep.timeout = timeout
        FunctionStep.kind = "function"
        FunctionStep.description = (inspect.getdoc(func) or "").split("\n")[0]
        FunctionStep.__name__ = FunctionStep.__qualname__ = f"step_{name}"
        FunctionStep.__module__ = func.__module__
        func.__wfed_step__ = FunctionStep  # type: ignore[attr-defined]
        return func

    return decorate


def step_class_of(obj: object) -> type[Step] | None:
    """The step class a module attribute stands for, if it is a step."""
    if isinstance(obj, type) and issubclass(obj, Step) and obj.name:
        return obj
    wrapped = getattr(obj, "__wfed_step__", None)
    if isinstance(wrapped, type) and issubclass(wrapped, Step):
        return wrapped
    return None
