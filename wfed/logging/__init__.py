"""structlog, configured once: JSON lines by default, a console renderer on a TTY.

Every line carries the workflow, step and attempt it concerns (bound through contextvars
by the runner). Standard-library loggers (SQLAlchemy, asyncmy, Alembic) go through the
same renderer, so journald sees one format.

wfed's own loggers come from `get_logger`: used as a library (`wfed.Engine` in a script)
by a process that never configured structlog, wfed says only warnings and errors, on
stderr; once anyone configures structlog — `configure_logging` in `wfed` and `wfectl`, or
the library's user — its lines follow that configuration.

structlog is imported by the first line worth writing, not with this module: until then
nobody can have configured it, so a debug or info line goes nowhere without it. A
`wfectl` command that logs nothing above info never imports it.

The daemon writes a line per step, thousands a second: its lines are rendered by a short
chain of processors and written by `wfed.logging.output.LineOutput`, once per turn of the
event loop rather than once per line.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Literal, TextIO

from wfed.logging.output import LineOutput

if TYPE_CHECKING:
    import structlog

Format = Literal["json", "console", "auto"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str = "info",
    fmt: Format = "auto",
    stream: TextIO | None = None,
    *,
    per_loop_turn: bool = False,
) -> None:
    """Configure structlog and the standard library's logging for this process. With
    `per_loop_turn` (the daemon), lines logged on a running event loop are written once
    per turn of the loop (see `LineOutput`)."""
    import structlog  # noqa: PLC0415 - see the module docstring

    stream = stream or sys.stderr
    numeric = _LEVELS.get(level, logging.INFO)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _utc_timestamp,
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if console
        else structlog.processors.JSONRenderer(serializer=_json_line)
    )
    global _output  # noqa: PLW0603 - one output per process, as structlog's configuration
    _output = output = LineOutput(stream, per_loop_turn=per_loop_turn)
    structlog.configure(
        processors=[*shared, _render_exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=output.logger,
        cache_logger_on_first_use=False,
    )
    # The standard library's lines (rare: warnings of the drivers) go through the same
    # output, which writes them at once with whatever it gathered before them.
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # The MySQL driver logs every server warning (e.g. notes about DDL) at WARNING.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class _UtcTimestamp:
    """The line's time in ISO 8601 UTC with microseconds ("2026-11-30T17:00:00.123456Z",
    as structlog's TimeStamper(fmt="iso", utc=True) writes it), at a third of its cost:
    the text up to the second is made once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


_utc_timestamp = _UtcTimestamp()


def _render_exceptions(logger: Any, method: str, event_dict: Any) -> Any:
    """structlog's stack and exception renderers, run only for a line that carries a stack
    or an exception (`log.exception`, `exc_info=`, `stack_info=`): most lines have
    neither, and the two cost as much as the rest of a line's processors."""
    if "stack_info" not in event_dict and "exc_info" not in event_dict:
        return event_dict
    import structlog  # noqa: PLC0415 - imported already: it called us

    event_dict = structlog.processors.StackInfoRenderer()(logger, method, event_dict)
    return structlog.processors.format_exc_info(logger, method, event_dict)


_output: LineOutput | None = None


def flush_log() -> None:
    """Write the lines gathered so far (before leaving with `os._exit`, which runs no
    exit handlers)."""
    if _output is not None:
        _output.flush()


def _json_default(value: Any) -> Any:
    """What a JSON line shows of a value JSON has no form for: its own `__structlog__`
    rendering where it has one, else its repr."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# One encoder for every line: `json.dumps` with a `default` builds a new encoder per
# call, which a daemon writing a line per step pays thousands of times a second.
_ENCODER = json.JSONEncoder(default=_json_default)


def _json_line(event_dict: Any, **_: Any) -> str:
    return _ENCODER.encode(event_dict)


@functools.cache
def _quiet() -> Any:
    """wfed's logger before anyone configured structlog: warnings and up, on stderr."""
    import structlog  # noqa: PLC0415 - see the module docstring

    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
    )


# Below a warning: what an unconfigured process drops.
_QUIET_METHODS = frozenset({"debug", "info", "msg", "adebug", "ainfo", "amsg"})


def _dropped(*_: Any, **__: Any) -> None:
    return None


class _LazyLogger:
    """A logger that follows structlog's configuration once there is one, and is quiet
    (warnings and up, on stderr) before that; structlog is imported by its first line
    that is not dropped.

    The logger it resolves to is kept until structlog's configuration changes: a runner
    logs a line or two per step, and building a bound logger for each cost more than
    writing the line."""

    __slots__ = ("_name", "_resolved", "_resolved_for", "_values")

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self._name = name
        self._values = values
        self._resolved: Any = None
        self._resolved_for: tuple[Any, ...] = ()

    def bind(self, **new_values: Any) -> _LazyLogger:
        return _LazyLogger(self._name, {**self._values, **new_values})

    def new(self, **new_values: Any) -> _LazyLogger:
        return _LazyLogger(self._name, dict(new_values))

    def unbind(self, *keys: str) -> _LazyLogger:
        return _LazyLogger(self._name, {k: v for k, v in self._values.items() if k not in keys})

    def __getattr__(self, method: str) -> Any:
        if method in _QUIET_METHODS and "structlog" not in sys.modules:
            return _dropped  # nobody configured structlog: nobody imported it
        return getattr(self._logger(), method)

    # The common levels are methods of their own: reaching `__getattr__` costs a failed
    # attribute lookup first, which cost more than the rest of the call.
    def debug(self, *args: Any, **kw: Any) -> Any:
        if "structlog" not in sys.modules:
            return None
        return self._logger().debug(*args, **kw)

    def info(self, *args: Any, **kw: Any) -> Any:
        if "structlog" not in sys.modules:
            return None
        return self._logger().info(*args, **kw)

    def warning(self, *args: Any, **kw: Any) -> Any:
        return self._logger().warning(*args, **kw)

    def error(self, *args: Any, **kw: Any) -> Any:
        return self._logger().error(*args, **kw)

    def exception(self, *args: Any, **kw: Any) -> Any:
        return self._logger().exception(*args, **kw)

    def _logger(self) -> Any:
        import structlog  # noqa: PLC0415 - see the module docstring

        # What a bound logger is built from. `capture_logs` and the like change the
        # processors in place, which a kept logger sees (it holds the same list).
        configuration = (structlog.is_configured(), *structlog.get_config().values())
        if self._resolved is None or configuration != self._resolved_for:
            if configuration[0]:
                self._resolved = structlog.get_logger(self._name).bind(**self._values)
            else:
                self._resolved = _quiet().bind(**self._values)
            self._resolved_for = configuration
        return self._resolved


def get_logger(name: str) -> Any:
    """The logger of a wfed module (see the module docstring)."""
    return _LazyLogger(name, {})
