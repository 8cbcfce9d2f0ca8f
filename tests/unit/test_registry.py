"""The step registry: built-ins plus the listed modules, and nothing else (README, "Writing
steps")."""

from __future__ import annotations

import sys

import pytest
from stepmods import dup_a, dup_b, reexport, typed, unlisted

from wfed.errors import ConfigError
from wfed.steps.base import step_class_of
from wfed.steps.pause import Pause
from wfed.steps.registry import StepRegistry
from wfed.steps.sleep import Sleep

STEPMODS = typed.__name__.rpartition(".")[0]
TYPED_STEPS = {"deploy", "inherit", "report", "anything", "notify", "record", "no_args", "ping"}

# The built-in steps: always registered, whatever the configuration lists.
BUILTINS = {"http", "pause", "shell", "sleep"}


def test_from_modules_has_builtins_and_module_steps() -> None:
    """from_modules() registers the built-ins (sleep, pause) plus every step of the module."""
    registry = StepRegistry.from_modules([typed.__name__])
    assert set(registry.names()) == BUILTINS | TYPED_STEPS
    assert registry.names() == sorted(registry.names())
    assert registry.get("sleep") is Sleep
    assert registry.get("pause") is Pause
    assert registry.get("deploy") is typed.Deploy
    assert registry.get("notify") is step_class_of(typed.notify)
    assert "record" in registry
    assert "nope" not in registry
    assert registry.get("nope") is None
    assert dict(registry.items())["report"] is typed.Report


def test_builtins_alone() -> None:
    """With no modules listed, only the built-in steps are registered."""
    assert set(StepRegistry.from_modules([]).names()) == BUILTINS


def test_without_builtins() -> None:
    """builtins=False registers the listed modules' steps only."""
    assert set(StepRegistry.from_modules([typed.__name__], builtins=False).names()) == TYPED_STEPS


def test_unnamed_base_classes_are_not_steps() -> None:
    """Step itself and a subclass without a name (a shared base) are not registered."""
    registry = StepRegistry.from_modules([typed.__name__])
    assert "" not in registry
    assert typed._Base not in dict(registry.items()).values()


@pytest.mark.parametrize("name", [f"{STEPMODS}.does_not_exist", "wfed_test_no_such_package"])
def test_missing_module(name: str) -> None:
    """A listed module that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"\[steps\] modules") as excinfo:
        StepRegistry.from_modules([name])
    assert repr(name) in str(excinfo.value)


def test_module_with_missing_dependency() -> None:
    """A listed module whose own import fails is a ConfigError naming module and cause."""
    name = f"{STEPMODS}.missing_dependency"
    with pytest.raises(ConfigError) as excinfo:
        StepRegistry.from_modules([name])
    assert repr(name) in str(excinfo.value)
    assert "wfed_test_no_such_dependency" in str(excinfo.value)


def test_module_raising_at_import() -> None:
    """A listed module that raises while loading is a ConfigError with the exception text."""
    name = f"{STEPMODS}.broken"
    for _ in range(2):  # a failed import is not cached: it fails the same way again
        with pytest.raises(ConfigError) as excinfo:
            StepRegistry.from_modules([name])
        message = str(excinfo.value)
        assert repr(name) in message
        assert "RuntimeError" in message
        assert "boom at import" in message


@pytest.mark.parametrize("name", ["", ".relative"])
def test_unimportable_module_name(name: str) -> None:
    """A module name that cannot be imported at all is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match=r"\[steps\] modules"):
        StepRegistry.from_modules([name])


def test_two_classes_with_the_same_name() -> None:
    """Two different classes with one step name are a ConfigError naming both."""
    with pytest.raises(ConfigError) as excinfo:
        StepRegistry.from_modules([dup_a.__name__, dup_b.__name__])
    message = str(excinfo.value)
    assert "'dup'" in message
    assert f"{dup_a.__name__}.DupA" in message
    assert f"{dup_b.__name__}.DupB" in message


def test_step_named_like_a_builtin() -> None:
    """A module step that takes a built-in's name is a ConfigError naming both."""
    with pytest.raises(ConfigError) as excinfo:
        StepRegistry.from_modules([f"{STEPMODS}.dup_builtin"])
    message = str(excinfo.value)
    assert "'sleep'" in message
    assert "Sleep" in message
    assert f"{STEPMODS}.dup_builtin" in message


def test_add_refuses_a_second_class() -> None:
    """add() refuses a different class under a name already taken; the first one stays."""
    registry = StepRegistry({"dup": dup_a.DupA})
    with pytest.raises(ConfigError, match="defined twice"):
        registry.add(dup_b.DupB)
    assert registry.get("dup") is dup_a.DupA


def test_same_class_in_two_modules_is_fine() -> None:
    """A step imported into a second module (or a module listed twice) is one step."""
    registry = StepRegistry.from_modules([typed.__name__, reexport.__name__, typed.__name__])
    assert registry.get("deploy") is typed.Deploy
    assert registry.get("notify") is step_class_of(typed.notify)
    assert set(registry.names()) == BUILTINS | TYPED_STEPS


def test_reexported_steps_alone() -> None:
    """Steps a listed module imports at its top level are registered from it."""
    registry = StepRegistry.from_modules([reexport.__name__], builtins=False)
    assert registry.names() == ["deploy", "notify"]


def test_nothing_from_unlisted_modules() -> None:
    """Steps of modules not listed are not registered, even when those modules are loaded."""
    assert unlisted.__name__ in sys.modules
    registry = StepRegistry.from_modules([typed.__name__, reexport.__name__])
    for name in ("hidden_class", "hidden_function"):
        assert name not in registry
    assert set(StepRegistry.from_modules([unlisted.__name__]).names()) == BUILTINS | {
        "hidden_class",
        "hidden_function",
    }
