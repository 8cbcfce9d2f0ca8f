"""wfed: persisted, sequential workflows for ops teams.

The names below are imported the first time they are used (`from wfed import Engine`
imports the engine then), so that importing a part of wfed — wfectl, a step module —
does not import SQLAlchemy and the whole engine with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wfed.errors import (
    ConfigError,
    DatabaseUnavailable,
    ErrorState,
    InvalidDefinition,
    InvalidTransition,
    SchemaOutdated,
    StepError,
    WfedError,
    WorkflowExists,
    WorkflowHalted,
    WorkflowLocked,
    WorkflowNotFound,
)
from wfed.sqlalchemy_without_orm import install as _install_sqlalchemy_without_orm
from wfed.states import StepState, WorkflowState

_install_sqlalchemy_without_orm()

if TYPE_CHECKING:
    from wfed.engine.facade import Engine
    from wfed.engine.views import EventView, Workflow, WorkflowSummary
    from wfed.steps.base import Context, PauseWorkflow, Step, step

    __version__: str

_LAZY = {
    "Engine": "wfed.engine.facade",
    "EventView": "wfed.engine.views",
    "Workflow": "wfed.engine.views",
    "WorkflowSummary": "wfed.engine.views",
    "Context": "wfed.steps.base",
    "PauseWorkflow": "wfed.steps.base",
    "Step": "wfed.steps.base",
    "step": "wfed.steps.base",
}


def _version() -> str:
    metadata = importlib.import_module("importlib.metadata")
    try:
        return str(metadata.version("wfed"))
    except metadata.PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+source"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'wfed' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "Context",
    "DatabaseUnavailable",
    "Engine",
    "ErrorState",
    "EventView",
    "InvalidDefinition",
    "InvalidTransition",
    "PauseWorkflow",
    "SchemaOutdated",
    "Step",
    "StepError",
    "StepState",
    "WfedError",
    "Workflow",
    "WorkflowExists",
    "WorkflowHalted",
    "WorkflowLocked",
    "WorkflowNotFound",
    "WorkflowState",
    "WorkflowSummary",
    "__version__",
    "step",
]
