"""The built-in generic steps, always registered."""

from wfed.steps.http import Http
from wfed.steps.pause import Pause
from wfed.steps.shell import Shell
from wfed.steps.sleep import Sleep

__all__ = ["Http", "Pause", "Shell", "Sleep"]
