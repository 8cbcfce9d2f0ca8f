"""Values as the `--json` documents write them: timestamps in ISO-8601 with their zone,
and anything JSON cannot hold as its repr."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as ISO-8601 with its zone."""
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"


def jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else its repr."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
