"""The registry of steps a daemon or engine can run.

It is filled only from the built-in steps and the modules named in `[steps] modules`
(looked up with the directories of `[steps] paths` first on the import path):
nothing is ever imported by a name read from the database, so a row can only name a step
that an operator's configuration made available.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType

from wfed.errors import ConfigError
from wfed.steps.base import Step, step_class_of

BUILTIN_MODULES = ("wfed.steps.builtin",)


class StepRegistry:
    """Step names → step classes."""

    def __init__(self, steps: Mapping[str, type[Step]] | None = None) -> None:
        self._steps: dict[str, type[Step]] = {}
        for step_class in (steps or {}).values():
            self.add(step_class)

    def add(self, step_class: type[Step], origin: str = "") -> None:
        """Register a step class; two different classes may not share a name."""
        existing = self._steps.get(step_class.name)
        if existing is not None and existing is not step_class:
            raise ConfigError(
                f"[steps] modules: step name {step_class.name!r} is defined twice "
                f"({existing.__module__}.{existing.__qualname__} and "
                f"{origin or step_class.__module__}.{step_class.__qualname__})"
            )
        self._steps[step_class.name] = step_class

    def add_module(self, module: ModuleType) -> None:
        """Register every step a module defines or imports at its top level."""
        for value in vars(module).values():
            step_class = step_class_of(value)
            if step_class is not None:
                self.add(step_class, module.__name__)

    def get(self, name: str) -> type[Step] | None:
        return self._steps.get(name)

    def names(self) -> list[str]:
        return sorted(self._steps)

    def items(self) -> list[tuple[str, type[Step]]]:
        return sorted(self._steps.items())

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    @classmethod
    def from_modules(
        cls, modules: Iterable[str], *, paths: Iterable[str] = (), builtins: bool = True
    ) -> StepRegistry:
        """The built-in steps plus those of the configured modules, found on the import
        path with the configured `paths` (directories) in front of it."""
        _extend_import_path(paths)
        registry = cls()
        names = [*BUILTIN_MODULES, *modules] if builtins else list(modules)
        for name in names:
            registry.add_module(_import(name))
        return registry


def _extend_import_path(paths: Iterable[str]) -> None:
    """Put the configured step directories first on the import path (from the config
    only: never from a row)."""
    for path in reversed(list(paths)):
        if not os.path.isdir(path):
            raise ConfigError(f"[steps] paths: {path!r} is not a directory")
        if path not in sys.path:
            sys.path.insert(0, path)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"[steps] modules: cannot import {name!r}: {exc}") from None
    except Exception as exc:  # the module itself failed while loading
        raise ConfigError(
            f"[steps] modules: importing {name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
