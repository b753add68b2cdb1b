"""The provider's errors: which ones Airflow fails at once, which ones it retries, and without Airflow."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_provider import exceptions as e

NO_RETRY = [
    e.ConfigurationError,
    e.DataNotFound,
    e.EmptyPartition,
    e.ValidationFailed,
    e.BatchQuarantined,
    e.TrainingInputRejected,
    e.TrainerContractError,
    e.ModelRegistrationFailed,
]
RETRIABLE = [e.ServiceUnavailable, e.TrainingFailed]


def test_every_error_of_the_module_is_classified_here() -> None:
    declared = {
        obj
        for obj in vars(e).values()
        if isinstance(obj, type) and issubclass(obj, e.MlopsProviderError) and obj is not e.MlopsProviderError
    }
    assert declared == {*NO_RETRY, *RETRIABLE}


@pytest.mark.parametrize("error", NO_RETRY)
def test_errors_a_retry_cannot_fix_fail_the_task_at_once(error: type[Exception]) -> None:
    assert e.AirflowFailException is AirflowFailException  # Airflow's own marker where Airflow is installed
    assert issubclass(error, AirflowFailException) and issubclass(error, e.MlopsProviderError)
    with pytest.raises(AirflowFailException, match="fix it"):
        raise error("fix it")


@pytest.mark.parametrize("error", RETRIABLE)
def test_transient_errors_are_retried(error: type[Exception]) -> None:
    assert not issubclass(error, AirflowFailException)
    assert issubclass(error, e.MlopsProviderError)


def test_the_hierarchy_lets_callers_catch_by_family() -> None:
    assert issubclass(e.BatchQuarantined, e.ValidationFailed)
    # A rejected input is still a training failure for a caller that catches those.
    assert issubclass(e.TrainingInputRejected, e.TrainingFailed)
    assert issubclass(e.MlopsProviderError, Exception) and not issubclass(
        e.MlopsProviderError, AirflowFailException
    )


def test_without_airflow_the_errors_fall_back_to_a_plain_base() -> None:
    """The trainer image has no Airflow: the module still imports, with the same hierarchy."""
    script = textwrap.dedent(
        """
        import sys

        class NoAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError(f"no {name} in the trainer image")

        sys.meta_path.insert(0, NoAirflow())
        from mlops_provider import exceptions as e

        assert "airflow" not in sys.modules
        assert e.AirflowFailException.__module__ == "mlops_provider.exceptions"
        assert issubclass(e.ConfigurationError, e.AirflowFailException)
        assert not issubclass(e.ServiceUnavailable, e.AirflowFailException)
        try:
            raise e.TrainingInputRejected("bad label")
        except e.TrainingFailed as err:
            print("caught", type(err).__name__, err)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "caught TrainingInputRejected bad label"
