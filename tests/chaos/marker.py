"""A module that must never be imported by a daemon: importing it leaves a marker file.

The hostile rows of `test_hostile_rows.py` name it as a step ("marker", "chaos.marker",
"tests.chaos.marker"), and it is on the daemons' import path under each of those names.
wfed imports only the modules of its configuration, never a name read from a row, so the
file named by `WFED_CHAOS_MARKER` must never appear.
"""

from __future__ import annotations

import os

_path = os.environ.get("WFED_CHAOS_MARKER")
if _path:
    with open(_path, "a", encoding="utf-8") as _marker:
        _marker.write(f"imported by pid {os.getpid()}\n")
