"""``python -m mlops_provider.trainer``: see :mod:`mlops_provider.trainer.cli`."""

from mlops_provider.trainer.cli import main

raise SystemExit(main())
