"""Acceptance tests: the `wfed` and `wfectl` executables run as processes."""
