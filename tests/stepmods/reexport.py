"""Imports steps of `typed` (the same objects) and the `unlisted` module as a whole."""

from __future__ import annotations

from . import unlisted as helpers
from .typed import Deploy, notify

__all__ = ["Deploy", "helpers", "notify"]
