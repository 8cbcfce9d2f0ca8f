"""The wfed daemon: claims runnable workflows and runs them, many at once."""
