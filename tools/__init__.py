"""Project tooling outside the provider wheel: `make demo` (demo.py) and the loopback stack it runs (local_stack.py)."""
