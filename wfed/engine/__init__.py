"""The engine: the `Engine` facade over a wfed database, and the parts it runs workflows
with (the runner, its lease, step execution, the end of a runner's turn), plus the views,
health and retention that the facade offers.

`Engine` is imported the first time it is used, so that a light part of the engine (the
views wfectl renders) can be imported without SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wfed.engine.facade import Engine, default_actor


def __getattr__(name: str) -> Any:
    if name in {"Engine", "default_actor"}:
        value = getattr(importlib.import_module("wfed.engine.facade"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wfed.engine' has no attribute {name!r}")


__all__ = ["Engine", "default_actor"]
