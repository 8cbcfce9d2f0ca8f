"""Step modules for the integration tests (listed in the `step_modules` of their Engines).

`tests/` is on `sys.path` while pytest runs (the rootdir conftest is in a directory without
`__init__.py`, so pytest's default "prepend" import mode inserts it), which makes this
package importable as `stepmods`; `tests/integration/conftest.py` inserts it too, so the
name also works under `--import-mode=importlib`.
"""
