"""The errors wfed raises: every one is a `WfedError`, and its text is the operator's message."""

from __future__ import annotations


class WfedError(Exception):
    """Base of every error wfed reports; `wfectl` maps it to exit code 1 and one line."""


class ConfigError(WfedError):
    """The configuration file or environment is wrong (the message names the key)."""


class DatabaseUnavailable(WfedError):
    """The database cannot be reached, or answered with an error wfed cannot act on."""


class SchemaOutdated(WfedError):
    """The schema is missing or older than this wfed; `wfectl db upgrade` fixes it."""


class WorkflowExists(WfedError):
    """A workflow with this name already exists (names are unique)."""


class WorkflowNotFound(WfedError):
    """No workflow has this name."""


class InvalidTransition(WfedError):
    """The operation is not allowed from the workflow's current state."""


class InvalidDefinition(WfedError):
    """A workflow's steps or context cannot be run as given (the message names the fix)."""


class StepError(WfedError):
    """A step failed after its retries; the workflow is now in `error`."""


class WorkflowHalted(WfedError):
    """The workflow was paused or stopped while `Engine.run` was running it."""


class WorkflowLocked(WfedError):
    """Another owner (a daemon or another `Engine.run`) holds the workflow's lease."""


class ErrorState(WfedError):
    """The workflow is in `error`: retry, skip or delete it first."""


class LeaseLost(WfedError):
    """This owner's fencing token no longer matches: another owner took the workflow over."""
