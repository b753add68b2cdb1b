"""Benchmarks (`make bench`): each module prints markdown; __main__ collects them into docs/benchmarks.md."""
