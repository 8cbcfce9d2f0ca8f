"""JSON scalars in a shell step's arguments and environment are passed as JSON text."""

from __future__ import annotations

from wfed.steps.definition import check_args
from wfed.steps.shell import Shell
from wfed.steps.template import render


async def test_booleans_and_null_are_passed_as_json() -> None:
    """`true`, `false` and `null` reach the command as `true`, `false` and `null` — whole
    arguments, inside strings, and in the environment — not as `1`, `True` or `None`."""
    context = {"yes": True, "no": False, "none": None}
    raw = {
        "cmd": [
            *["/bin/sh", "-c", 'printf "%s|%s|%s|%s|%s" "$@" "$FLAG"', "-"],
            *["{yes}", "{no}", "{none}", "--force={yes}"],
        ],
        "env": {"FLAG": "{no}"},
        "save_as": "out",
    }
    args = check_args(Shell, render(raw, context), "test", rendered=True)
    await Shell().run(context, **args)
    assert context["out"]["stdout"] == "true|false|null|--force=true|false"
