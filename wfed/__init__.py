"""wfed: persisted, sequential workflows for ops teams."""

from importlib.metadata import PackageNotFoundError, version

from wfed.engine import Engine
from wfed.engine.views import EventView, Workflow, WorkflowSummary
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
from wfed.states import StepState, WorkflowState
from wfed.steps import Context, PauseWorkflow, Step, step

try:
    __version__ = version("wfed")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

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
