"""Benchmarks of wfed: `python -m bench` (`make bench`); see bench/README.md."""
