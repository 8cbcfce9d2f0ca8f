"""A corpus of hostile `workflows` rows, as anyone with an INSERT could write them.

Each row carries its `steps` and `context` as raw text (so that malformed JSON reaches
the database as it is) and, for a few, other columns. Every one of them must end in
`error` with a readable `last_error`, or be refused by the database at INSERT. The
hostile parts are chosen to be refused by wfed for what they are; a row that would run
a step has a context with the journal, so that a step it should never have run shows up
there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024
BIG_CONTEXT_BYTES = 50 * MB


@dataclass(frozen=True)
class HostileRow:
    label: str
    steps: str
    context: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    """Other columns, as given to the INSERT."""
    only: frozenset[str] | None = None
    """The backends it is inserted on (all three if None)."""

    @property
    def size(self) -> int:
        return len(self.steps) + len(self.context or "")


def _j(value: Any) -> str:
    return json.dumps(value)


def _nested_list(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _nested_object(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


def corpus(journal: str, trap_dir: str) -> list[HostileRow]:
    """The hostile rows. `trap_dir` is where a shell metacharacter that was obeyed would
    create a file (it must stay empty)."""
    ctx = _j({"journal": journal})

    def mark(tag: Any = "hostile", **element: Any) -> dict[str, Any]:
        return {"step": "mark", "args": {"tag": tag}, **element}

    def row(label: str, steps: Any, context: str = ctx, **kw: Any) -> HostileRow:
        text_ = steps if isinstance(steps, str) else _j(steps)
        return HostileRow(label, text_, context, **kw)

    sqlite_only = frozenset({"sqlite"})
    trap = f"{trap_dir}/obeyed"
    return [
        # -- malformed JSON (only SQLite lets it in) --
        row("steps not JSON", "not json", only=sqlite_only),
        row("steps truncated", '[{"step": "mark"', only=sqlite_only),
        row("steps single-quoted", "['mark']", only=sqlite_only),
        row("steps trailing comma", '["mark",]', only=sqlite_only),
        row("steps empty text", "", only=sqlite_only),
        row("context truncated", _j([mark()]), '{"journal": ', only=sqlite_only),
        row("context not JSON", _j([mark()]), "undefined", only=sqlite_only),
        row("steps NaN", "NaN"),
        row("context with NaN", _j([mark()]), '{"journal": "x", "n": NaN}'),
        row("args Infinity", '[{"step": "mark", "args": {"tag": Infinity}}]'),
        # -- nesting --
        row("steps nested 10,000 deep", _nested_list(10_000)),
        row("context nested 10,000 deep", _j([mark()]), _nested_object(10_000)),
        row(
            "args nested 10,000 deep",
            f'[{{"step": "mark", "args": {{"tag": {_nested_list(10_000)}}}}}]',
        ),
        row("steps nested 100 deep", _nested_list(100, '"mark"')),
        row("context nested 100 deep", _j([mark()]), _nested_object(100)),
        row(
            "args nested 100 deep", f'[{{"step": "mark", "args": {{"tag": {_nested_list(100)}}}}}]'
        ),
        # -- huge strings --
        row("1 MB step name", [{"step": "s" * MB}]),
        row("1 MB step name as a string", ["n" * MB]),
        row("1 MB label", [mark(label="l" * MB)]),
        row("1 MB argument name", [{"step": "mark", "args": {"tag": "t", "a" * MB: 1}}]),
        row("1 MB unknown key", [mark(**{"k" * MB: 1})]),
        row("step name of 200,000 lines", [{"step": "mark\n" * (MB // 5)}]),
        row(
            "50 MB context",
            [mark(retries=-1)],
            _j({"journal": journal, "blob": "b" * BIG_CONTEXT_BYTES}),
        ),
        # -- huge and overflowing numbers --
        row("seconds 1e400", '[{"step": "slow", "args": {"tag": "h", "seconds": 1e400}}]'),
        row("context 1e400", _j([mark()]), '{"journal": "x", "n": 1e400}'),
        row("context -1e400", _j([mark()]), '{"journal": "x", "n": -1e400}'),
        row("retry_delay 1e300", [mark(retries=1, retry_delay=1e300)]),
        row("backoff 1e300", [mark(retries=1, backoff=1e300)]),
        row("timeout 1e300", [mark(timeout=1e300)]),
        row("retry_delay 1e400", '[{"step": "mark", "args": {"tag": "h"}, "retry_delay": 1e400}]'),
        row("retries 40 digits", [mark(retries=10**40)]),
        row("tag 40 digits", [mark(tag=10**40)]),
        row("context 40 digits", _j([mark()]), _j({"journal": journal, "n": -(10**40)})),
        row("negative retries", [mark(retries=-1)]),
        row("negative timeout", [mark(timeout=-5)]),
        row("zero timeout", [mark(timeout=0)]),
        row("fractional retries", [mark(retries=1.5)]),
        # -- wrong types --
        row("step a number", [{"step": 7}]),
        row("step null", [{"step": None}]),
        row("step a list", [{"step": ["mark"]}]),
        row("args a list", [{"step": "mark", "args": []}]),
        row("args a string", [{"step": "mark", "args": "tag=x"}]),
        row("label a number", [mark(label=5)]),
        row("retries a string", [mark(retries="3")]),
        row("timeout a boolean", [mark(timeout=True)]),
        row("idempotent a string", [mark(idempotent="yes")]),
        row("element a number", [42]),
        row("element null", [None]),
        row("element a boolean", [True]),
        row("element a nested list", [["mark"]]),
        row("tag a number", [mark(tag=5)]),
        row("seconds a string", [{"step": "slow", "args": {"tag": "h", "seconds": "soon"}}]),
        # -- names that look like modules --
        row("os.system", ["os.system"]),
        row("wfed.engine", ["wfed.engine"]),
        row("__import__", ["__import__"]),
        row("tests.chaos.marker", ["tests.chaos.marker"]),
        row("chaos.marker", ["chaos.marker"]),
        row("marker", ["marker"]),
        row("marker with args", [{"step": "marker", "args": {"x": 1}}]),
        row("a module's step by path", [{"step": "stepmods.journal.mark"}]),
        row(
            "builtins.eval", [{"step": "builtins.eval", "args": {"source": "__import__('marker')"}}]
        ),
        row(
            "importlib.import_module",
            [{"step": "importlib.import_module", "args": {"name": "marker"}}],
        ),
        row("a file path", ["../../tests/chaos/marker.py"]),
        row("dunder step", ["__class__"]),
        # -- context references that reach for attributes --
        row("template attribute", [mark(tag="{journal.__class__}")]),
        row("template attribute of a missing key", [mark(tag="{x.__class__}")]),
        row("template index of a string", [mark(tag="{journal[0]}")]),
        row("template index of a missing key", [mark(tag="{x[0]}")]),
        row("template builtins", [mark(tag="{__builtins__}")]),
        row("template subclasses", [mark(tag="{journal.__class__.__mro__[1].__subclasses__}")]),
        row(
            "template globals in a shell argument",
            [{"step": "shell", "args": {"cmd": ["echo", "{journal.__init__.__globals__}"]}}],
        ),
        # -- shell metacharacters, shell false --
        row("shell ; as the program", [{"step": "shell", "args": {"cmd": [f"; touch {trap}"]}}]),
        row(
            "shell $( ) as the program", [{"step": "shell", "args": {"cmd": [f"$(touch {trap})"]}}]
        ),
        row(
            "shell backticks as the program",
            [{"step": "shell", "args": {"cmd": [f"`touch {trap}`"]}}],
        ),
        row(
            "shell pipe as the program", [{"step": "shell", "args": {"cmd": ["|", "touch", trap]}}]
        ),
        row(
            "shell a command line as the program",
            [{"step": "shell", "args": {"cmd": [f"sh -c 'touch {trap}'"], "shell": False}}],
        ),
        row(
            "shell a string without shell",
            [{"step": "shell", "args": {"cmd": f"true; touch {trap}", "shell": False}}],
        ),
        row("shell an empty list", [{"step": "shell", "args": {"cmd": []}}]),
        row(
            "shell an unknown argument", [{"step": "shell", "args": {"cmd": ["true"], "sh": True}}]
        ),
        # -- unknown keys --
        row("unknown element key", [mark(bogus=1)]),
        row("unknown argument", [{"step": "mark", "args": {"tag": "t", "bogus": 1}}]),
        row("dunder element key", [mark(__class__="x")]),
        row("element without step", [{"args": {"tag": "t"}}]),
        # -- steps not a list, context not an object --
        row("steps an object", {"step": "mark"}),
        row("steps a string", '"mark"'),
        row("steps a number", "42"),
        row("steps a boolean", "true"),
        row("steps empty", "[]"),
        row("steps JSON null", "null"),
        row("context a list", [mark()], "[1, 2]"),
        row("context a string", [mark()], '"journal"'),
        row("context a number", [mark()], "42"),
        row("context a boolean", [mark()], "true"),
        # -- other columns --
        row("state unknown", [mark()], columns={"state": "exploded"}),
        row("requested unknown", [mark()], columns={"requested": "explode"}),
        row("current_step negative", [mark()], columns={"current_step": -1}),
        row("steps SQL NULL", "", None, columns={"steps": None}),
        row("priority a word", ["no_such_step"], columns={"priority": "high"}, only=sqlite_only),
        row(
            "current_step a word", ["no_such_step"], columns={"current_step": "x"}, only=sqlite_only
        ),
    ]


GOOD_STEPS = 3


def good_rows(journal: str, trap_dir: str, count: int) -> list[tuple[str, str, str]]:
    """(label, steps, context) of rows that must complete beside the hostile ones, the
    last with shell metacharacters as plain arguments (echo prints them)."""
    rows = [
        (
            f"good {i}",
            _j([{"step": "mark", "args": {"tag": f"good{i}s{p}"}} for p in range(GOOD_STEPS)]),
            _j({"journal": journal}),
        )
        for i in range(count)
    ]
    trap = f"{trap_dir}/obeyed"
    rows.append(
        (
            "good shell with metacharacters as arguments",
            _j(
                [
                    {
                        "step": "shell",
                        "args": {"cmd": ["echo", f"; touch {trap}", f"$(touch {trap})", "|", "&&"]},
                    }
                ]
            ),
            _j({"journal": journal}),
        )
    )
    return rows
