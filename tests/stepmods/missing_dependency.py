"""A step module that imports a package that is not installed."""

import wfed_test_no_such_dependency  # noqa: F401
