"""`sqlalchemy.ext.asyncio` without the ORM it imports.

The package's `__init__` imports its ORM session classes, and with them all of
`sqlalchemy.orm` — about 40 ms on the 2-core machine, paid by every `wfectl` call —
although wfed uses only its engine, connections and results (Core). `install()` puts a
finder first on the import path that gives `import sqlalchemy.ext.asyncio` a module with
those names at once; the first use of any other name (`AsyncSession`, …) runs the
package's own `__init__` into that module, so a program that wants the ORM beside wfed
still gets it.

It changes nothing when the package was imported before wfed was.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    # Only for typing: importing importlib.abc imports importlib.resources, and with it
    # pathlib, tempfile and urllib (10 ms); a finder and a loader need no base class.
    import importlib.abc

PACKAGE = "sqlalchemy.ext.asyncio"
CORE_NAMES = {
    "engine": (
        "AsyncConnection",
        "AsyncEngine",
        "AsyncTransaction",
        "async_engine_from_config",
        "create_async_engine",
        "create_async_pool_from_url",
    ),
    "result": ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult", "AsyncTupleResult"),
}


class _CoreFirstLoader:
    """Loads the package with its Core names only; the rest on first use."""

    def __init__(self, package_loader: importlib.abc.Loader) -> None:
        self._package_loader = package_loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        for submodule, names in CORE_NAMES.items():
            found = importlib.import_module(f"{PACKAGE}.{submodule}")
            for name in names:
                setattr(module, name, getattr(found, name))
        package_loader = self._package_loader
        loaded = False

        def __getattr__(name: str) -> Any:  # noqa: N807 - the module attribute hook
            nonlocal loaded
            if name.startswith("__") or loaded:
                raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
            loaded = True
            package_loader.exec_module(module)
            try:
                return module.__dict__[name]
            except KeyError:
                raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


class _Finder:
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = cast("importlib.abc.Loader", _CoreFirstLoader(spec.loader))
        return spec


def install() -> None:
    """Put the finder first on the import path (once)."""
    if PACKAGE not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
