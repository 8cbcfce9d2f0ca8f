"""The engine: the `Engine` facade over a wfed database, and the parts it runs workflows
with (the runner, its lease, step execution, the end of a runner's turn), plus the views,
health and retention that the facade offers."""

from wfed.engine.facade import Engine, default_actor

__all__ = ["Engine", "default_actor"]
