"""Train a model with the reference trainer or your own, locally or in a Kubernetes GPU pod.

Both backends run the same entrypoint with the same arguments (:func:`trainer_command`) and return
the same XCom, ``{"run_id", "model_uri", "metrics"}``, so a DAG switches backend with one setting.
Nothing here imports torch, mlflow or kubernetes at module level: DAG files import this module.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider.exceptions import (
    ConfigurationError,
    TrainerContractError,
    TrainingFailed,
    TrainingInputRejected,
)
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.trainer import EXIT_BAD_INPUT, RESULT_MARKER
from mlops_provider.trainer.command import (
    REFERENCE_TRAINER,
    as_columns,
    as_dict,
    entrypoint_argv,
    trainer_arguments,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_provider.operators.kubernetes import GPUTrainingOperator

BACKENDS = ("local", "kubernetes")
_TAIL_LINES = 30


class TrainModelOperator(BaseOperator):
    """Train with the reference trainer on the worker (``local``) or in a GPU pod (``kubernetes``).

    The kubernetes backend builds a :class:`~mlops_provider.operators.kubernetes.GPUTrainingOperator`
    at execute time and runs it; when that pod operator defers, Airflow resumes this operator's
    :meth:`trigger_reentry`, which hands the event to a rebuilt pod operator.

    :param backend: ``"local"`` or ``"kubernetes"``; shipped DAGs template it from the
        ``training_backend`` param (Airflow Variable ``mlops_training_backend``, default local).
    :param training_set_uri: parquet training set, local path or ``s3://``. (templated)
    :param evaluation_set_uri: optional held-out parquet set with the training set's columns, e.g. the
        window after the training window; the trainer scores the kept model on it (``eval_*`` metrics)
        and never fits or early-stops on it. None or empty for none. (templated)
    :param label_column: the label column (``label`` is taken by BaseOperator). (templated)
    :param task_type: ``binary`` (0/1 label), ``multiclass`` or ``regression``; the metrics, the model's
        outputs and the gate follow it (:mod:`mlops_provider.ml.tasks`). (templated)
    :param timestamp_column: the rows' event-time column (the trainer splits and checks by it); None
        reads it from the training set's metadata, which FeastHistoricalFeaturesOperator writes.
        (templated)
    :param feature_columns: the exact feature columns; None: every column that is not the label, an
        id, the timestamp or another datetime. (templated)
    :param hyperparameters: merged over the trainer's defaults; see docs/training.md. (templated)
    :param experiment: MLflow experiment name. (templated)
    :param id_columns: entity keys and other bookkeeping columns of the training set that are not
        features; None: the feature service's join keys, read from the training set's metadata
        (FeastHistoricalFeaturesOperator writes them), else none. (templated)
    :param mlflow_conn_id: MLflow connection; host = tracking URI. (templated)
    :param kubernetes_kwargs: extra GPUTrainingOperator arguments (image, gpus, namespace...). (templated)
    :param command: your own trainer's entrypoint, e.g. ``["python", "/opt/trainers/my_trainer.py"]``
        (in the pod: in your ``image``); the contract's arguments follow it (docs/training.md, "Bring
        your own trainer"). None runs the reference trainer. (templated)
    :return: ``{"run_id", "model_uri", "metrics"}`` from the trainer, checked against the contract: the
        run exists and its model's signature takes neither the label nor an id column.
    :raises TrainingInputRejected: the trainer refused the training set (not retried).
    :raises TrainingFailed: the trainer crashed or printed no result (retried).
    :raises TrainerContractError: the trainer's result or logged model breaks the contract (not retried).
    """

    template_fields: Sequence[str] = (
        "backend",
        "training_set_uri",
        "evaluation_set_uri",
        "label_column",
        "hyperparameters",
        "experiment",
        "id_columns",
        "model_task_type",
        "timestamp_column",
        "feature_columns",
        "mlflow_conn_id",
        "kubernetes_kwargs",
        "command",
    )
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        training_set_uri: str,
        label_column: str,
        experiment: str,
        backend: str = "local",
        hyperparameters: dict[str, Any] | str | None = None,
        id_columns: list[str] | str | None = None,
        evaluation_set_uri: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        kubernetes_kwargs: dict[str, Any] | None = None,
        command: list[str] | str | None = None,
        task_type: str = "binary",
        timestamp_column: str | None = None,
        feature_columns: list[str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.model_task_type = task_type
        self.timestamp_column = timestamp_column
        self.feature_columns = feature_columns
        self.training_set_uri = training_set_uri
        self.label_column = label_column
        self.hyperparameters = hyperparameters
        self.experiment = experiment
        self.id_columns = id_columns
        self.evaluation_set_uri = evaluation_set_uri
        self.mlflow_conn_id = mlflow_conn_id
        self.kubernetes_kwargs = kubernetes_kwargs
        self.command = command
        self._process: subprocess.Popen[str] | None = None
        self._pod_operator: GPUTrainingOperator | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        self._resolve_columns()
        backend = str(self.backend).strip().lower()
        if backend == "local":
            return self.check_contract(self._run_local())
        if backend == "kubernetes":
            self._pod_operator = self.pod_operator()
            return self.check_contract(self._pod_operator.execute(context))
        raise ConfigurationError(
            f"unknown training backend {self.backend!r} for task {self.task_id}; use one of {BACKENDS} "
            "(DAG param training_backend, Airflow Variable mlops_training_backend)"
        )

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume the deferred pod operator of the kubernetes backend."""
        return self.check_contract(self.pod_operator().trigger_reentry(context, event))

    def _resolve_columns(self) -> None:
        """Fill the id and timestamp columns not given from the training set's metadata, so every
        trainer (yours too) is told them; a set this worker cannot read is left to the trainer."""
        from mlops_provider.constants import JOIN_KEYS_METADATA, TIMESTAMP_COLUMN_METADATA
        from mlops_provider.exceptions import DataNotFound
        from mlops_provider.ml.io import parquet_metadata

        if self.id_columns is not None and self.timestamp_column:
            return
        try:
            metadata = parquet_metadata(str(self.training_set_uri))
        except DataNotFound as err:
            self.log.info("Training set metadata not read here (%s); the trainer resolves the columns.", err)
            return
        if self.id_columns is None and JOIN_KEYS_METADATA in metadata:
            self.id_columns = as_columns(metadata[JOIN_KEYS_METADATA])
            self.log.info("Id columns from the training set's feature service: %s", self.id_columns)
        if not self.timestamp_column and metadata.get(TIMESTAMP_COLUMN_METADATA):
            self.timestamp_column = metadata[TIMESTAMP_COLUMN_METADATA]
            self.log.info("Timestamp column from the training set: %r", self.timestamp_column)

    def _contract_kwargs(self) -> dict[str, Any]:
        return {
            "task_type": self.model_task_type,
            "timestamp_column": self.timestamp_column,
            "feature_columns": self.feature_columns,
        }

    def pod_operator(self) -> GPUTrainingOperator:
        """Build the GPU pod operator for this task with the shared trainer command."""
        from mlops_provider.operators.kubernetes import GPUTrainingOperator

        return GPUTrainingOperator(
            task_id=self.task_id,
            training_set_uri=self.training_set_uri,
            label_column=self.label_column,
            hyperparameters=as_dict(self.hyperparameters),
            experiment=self.experiment,
            id_columns=self.id_columns,
            evaluation_set_uri=self.evaluation_set_uri,
            mlflow_conn_id=self.mlflow_conn_id,
            **self._contract_kwargs(),
            **as_dict(self.kubernetes_kwargs),
            **self._command_kwargs(),
        )

    def _command_kwargs(self) -> dict[str, Any]:
        return {"command": self.command} if self.command else {}

    def _run_local(self) -> dict[str, Any]:
        entrypoint = entrypoint_argv(self.command) or [sys.executable, *REFERENCE_TRAINER]
        argv = [
            *entrypoint,
            *trainer_arguments(
                self.training_set_uri,
                label=self.label_column,
                experiment=self.experiment,
                hyperparameters=self.hyperparameters,
                id_columns=self.id_columns,
                evaluation_set_uri=self.evaluation_set_uri,
                **self._contract_kwargs(),
            ),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **MLflowHook(self.mlflow_conn_id).process_env()}
        self.log.info("Running the trainer locally: %s", " ".join(argv))
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        result = None
        # A scratch cwd keeps anything the trainer or MLflow writes relative to it off the worker.
        with tempfile.TemporaryDirectory(prefix="mlops-train-") as workdir:
            self._process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE; narrows the type for mypy
            for line in self._process.stdout:
                line = line.rstrip("\n")
                self.log.info("%s", line)
                tail.append(line)
                if line.startswith(RESULT_MARKER):
                    result = json.loads(line.removeprefix(RESULT_MARKER))
            code = self._process.wait()
        return self._check(code, result, "\n".join(tail))

    def _check(self, code: int, result: dict[str, Any] | None, tail: str) -> dict[str, Any]:
        where = f"trainer on {self.training_set_uri} (task {self.task_id})"
        if code == EXIT_BAD_INPUT:
            raise TrainingInputRejected(
                f"{where} refused the training or evaluation set; fix the data, then re-run:\n{tail}"
            )
        if code != 0:
            raise TrainingFailed(f"{where} exited with code {code}; last lines:\n{tail}")
        if result is None:
            raise TrainingFailed(
                f"{where} exited 0 without a {RESULT_MARKER.strip()} line; last lines:\n{tail}"
            )
        return result

    def check_contract(self, result: Any) -> Any:
        """Check a trainer's result and logged model against the contract; name what is missing.

        The reference trainer passes by construction; a user's trainer gets a message it can act on
        instead of a failure three tasks later (a key as a feature, a model with no signature).
        """
        where = f"the trainer of task {self.task_id}"
        if result is None:  # a deferred pod operator: checked on trigger_reentry
            return result
        if not isinstance(result, dict):
            raise TrainerContractError(
                f"{where} returned {type(result).__name__}, not the result JSON object"
            )
        missing = [key for key in ("run_id", "model_uri", "metrics") if key not in result]
        if missing or not isinstance(result.get("metrics"), dict):
            raise TrainerContractError(
                f"{where} returned {sorted(result)}; the contract's result is "
                f'{{"run_id", "model_uri", "metrics": {{...}}}}, missing {missing or ["metrics as an object"]}. '
                f"Print it as one line: {RESULT_MARKER.strip()} <json> (docs/training.md)"
            )
        hook = MLflowHook(self.mlflow_conn_id)
        with hook.session() as client:
            client.get_run(result["run_id"])  # raises, naming the run, when it does not exist
        try:
            inputs = hook.model_inputs(result["model_uri"])
        except Exception as err:
            raise TrainerContractError(
                f"{where}: model_uri {result['model_uri']!r} cannot be read ({type(err).__name__}: {err}); "
                "log a pyfunc model in the run and return its model_uri"
            ) from None
        if inputs is None:
            raise TrainerContractError(
                f"{where}: the model at {result['model_uri']} has no signature; log it with "
                "signature=mlflow.models.infer_signature(features) so scoring and drift know its inputs"
            )
        not_features = {self.label_column, *as_columns(self.id_columns), self.timestamp_column or ""}
        leaked = sorted(not_features & set(inputs))
        if leaked:
            raise TrainerContractError(
                f"{where}: the model's signature takes {leaked}, the label, id or timestamp columns; they must not be "
                "features (a key would become a feature, and scoring by another key would fail)"
            )
        if "reference/sample.parquet" not in hook.list_artifact_paths(result["run_id"], "reference"):
            self.log.warning(
                "Run %s has no reference/sample.parquet: drift detection against this model will be "
                "skipped; log one with mlops_provider.trainer.run.log_reference_sample",
                result["run_id"],
            )
        self.log.info("The trainer's result follows the contract: model inputs %s", inputs)
        return result

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
        if self._pod_operator is not None:
            self._pod_operator.on_kill()
