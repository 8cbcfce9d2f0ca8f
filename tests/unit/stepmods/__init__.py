"""Step modules used only by the unit tests (listed in registries the tests build)."""
