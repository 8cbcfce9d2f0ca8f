"""The step modules of the test suite, listed by dotted name (`stepmods.basic`, …) in the
`step_modules` of test Engines, in registries the unit tests build, and in the `[steps]
modules` of the daemon tests' `wfed` processes.

`tests/conftest.py` puts `tests/` on `sys.path` (whatever pytest's import mode), and the
daemon tests put it on the `PYTHONPATH` of the processes they start.

* `basic`: small steps the integration tests compose into workflows;
* `journal`: steps of the daemon tests, which append to a journal file;
* `typed`: classes and @step functions with typed arguments (registry, definitions);
* `reexport`, `unlisted`, `dup_a`, `dup_b`, `dup_builtin`, `broken`,
  `missing_dependency`: what the registry accepts and refuses.
"""
