"""The provider's small exception hierarchy.

Messages name the dataset, column, metric or model version at fault and say what the user can do.
Errors that a retry cannot fix derive from ``AirflowFailException`` so Airflow fails the task
at once instead of burning its retries. The domain core and the trainer image raise them too and run
without Airflow installed: there that base is a plain exception (the one Airflow import the
import contracts allow below the adapters, see pyproject.toml).
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # the trainer image: no Airflow, nothing to stop retrying

    class AirflowFailException(Exception):  # type: ignore[no-redef]
        """Stand-in for Airflow's "fail without retrying" marker where Airflow is not installed."""


class MlopsProviderError(Exception):
    """Base class of every error raised by this provider."""


class ConfigurationError(MlopsProviderError, AirflowFailException):
    """A connection, parameter or strategy is invalid; fix the configuration and re-run."""


class DataNotFound(MlopsProviderError, AirflowFailException):
    """An input partition, file or table does not exist."""


class EmptyPartition(MlopsProviderError, AirflowFailException):
    """An input partition exists but holds no rows and the task was told to fail on empty input."""


class ValidationFailed(MlopsProviderError, AirflowFailException):
    """A batch failed its expectation suite."""


class BatchQuarantined(ValidationFailed):
    """A batch failed validation and was moved to the quarantine area with its report."""


class TrainingFailed(MlopsProviderError):
    """The trainer exited with an error (retriable: it may be a lost node or a busy server)."""


class TrainingInputRejected(TrainingFailed, AirflowFailException):
    """The trainer refused its training set or hyperparameters; retrying cannot help, fix the input."""


class TrainerContractError(TrainingFailed, AirflowFailException):
    """A trainer's result or logged model breaks the trainer contract (docs/training.md); not retried."""


class ServiceUnavailable(MlopsProviderError):
    """A server (MLflow, Feast online store, Prometheus, Kubernetes) could not be reached; retriable."""


class ModelRegistrationFailed(MlopsProviderError, AirflowFailException):
    """The model registry marked a model version FAILED_REGISTRATION; register the model again."""
