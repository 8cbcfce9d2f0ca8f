"""Steps: the Step API, the registry, definitions and the built-in steps."""

from wfed.steps.base import Context, PauseWorkflow, Step, step
from wfed.steps.registry import StepRegistry

__all__ = ["Context", "PauseWorkflow", "Step", "StepRegistry", "step"]
