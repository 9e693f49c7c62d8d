"""Benchmarks: `python -m bench.<name>`; each has a run(...) -> dict for a `make bench` driver."""
