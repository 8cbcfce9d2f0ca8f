"""A step module that fails while it is imported."""

raise RuntimeError("broken step module: boom at import")
