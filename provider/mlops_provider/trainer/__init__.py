"""The reference trainer: the GPU pod's entrypoint and the local backend's subprocess.

Run it as ``python -m mlops_provider.trainer --training-set URI --label LABEL --experiment NAME
[--task-type binary|multiclass|regression]``. It is the only place in the provider that imports
torch; nothing on the DAG-parse path imports this package. See docs/training.md for the command line
and the contract of the logged model.
"""

from __future__ import annotations

RESULT_MARKER = "MLOPS_RESULT "
"""Prefix of the last stdout line, which carries the result JSON for the local backend."""

EXIT_BAD_INPUT = 3
"""Exit code for a training set or hyperparameters the trainer refuses; 1 means it crashed."""

# Prefixes of the run's metric names, by the rows that produced them (the UI groups metrics by them).
EVAL_METRIC_PREFIX = "eval_"
"""The optional evaluation set: rows never used to fit or to stop, the only held-out figures."""
EARLY_STOP_METRIC_PREFIX = "early_stop_"
"""The early-stopping slice (the last ``val_fraction`` of the training window), at the best epoch:
it chose the epoch, so it is optimistic and not held out."""
BEST_EPOCH_METRIC = "best_epoch"
"""The epoch whose weights were kept (1-based), chosen on the early-stopping slice's loss (log loss;
mean squared error for regression)."""
EPOCH_METRIC_PREFIX = "epoch_"
"""Per-epoch curves (step = epoch); their latest value is the last epoch's, not the kept model's."""
