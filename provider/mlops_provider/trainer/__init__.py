"""The reference trainer: the GPU pod's entrypoint and the local backend's subprocess.

Run it as ``python -m mlops_provider.trainer --training-set URI --label churned``. It is the only
place in the provider that imports torch; nothing on the DAG-parse path imports this package.
See docs/training.md for the command line and the contract of the logged model.
"""

from __future__ import annotations

RESULT_MARKER = "MLOPS_RESULT "
"""Prefix of the last stdout line, which carries the result JSON for the local backend."""

EXIT_BAD_INPUT = 3
"""Exit code for a training set or hyperparameters the trainer refuses; 1 means it crashed."""
