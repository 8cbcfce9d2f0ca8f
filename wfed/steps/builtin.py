"""The built-in generic steps, always registered."""

from wfed.steps.pause import Pause
from wfed.steps.sleep import Sleep

__all__ = ["Pause", "Sleep"]
