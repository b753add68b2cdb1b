"""Canary rollouts of registered MLflow models: deploy a step, promote, roll back, and batch scoring.

The rollout's semantics and state live in :mod:`mlops_provider.canary`; these operators are thin
and idempotent: a re-run for the same step, promotion or rollback changes nothing twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider.constants import CANARY, CHALLENGER, CHAMPION, TASK_TYPE_TAG
from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.utils.canary import CANARY_FIELDS, CanaryTask

if TYPE_CHECKING:
    from airflow.sdk import Context


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("name", "version", "status", "step", "weight", "reason")}


class CanaryDeployOperator(CanaryTask):
    """Start a rollout of ``version`` and, with ``step``, move it to that step of the strategy.

    Starting makes the version the ``canary`` (at weight 0), or promotes it at once when there is no
    champion yet, once it passed the backend's smoke test (batch: it scores a sample of its traffic, up
    to 300 rows of its held-out evaluation set by default, with an error rate within the strategy's
    ``error_rate`` limit; kserve has none). A first model that cannot score is refused, the task fails
    with its error summary, and no alias moves. A start is also refused, and the task fails with no
    canary and no traffic, when the gate compared the version with another champion than today's
    (``mlops.gate.champion_version``): re-run the gate, then this task. ``step`` (0-based) is deployed once the previous step's analysis passed; when the
    rollout is already there or finished, nothing changes.

    Every start and step re-checks that the champion is still the one the rollout started against. When
    it changed mid-rollout, the rollout stops: the canary's traffic is removed, the ``canary`` alias
    deleted, the champion left as it is, the state records ``refused`` with the reason, and the task
    fails with it (a ``ConfigurationError``): re-run the gate against the new champion, then start again.

    :param name: registered model name.
    :param version: the version to roll out; default the ``canary``, else the ``challenger`` alias.
    :param step: the strategy step to deploy; None only starts the rollout.
    :param backend: ``batch`` or ``kserve``.
    :param backend_config: the backend's settings, a dict (or its JSON); unknown keys are refused.

        ``batch``:

        - ``log_root`` (required): where the per-step prediction logs go;
        - ``entity_column`` (required: the feature service's join key): the key traffic is split and polls are
          sliced on;
        - ``traffic_uri`` (default None: the version's own held-out evaluation set, the URI in its
          ``mlops.eval_set_uri`` tag; without that tag the start fails before any traffic moves): a
          parquet file, directory or local glob (newest match) of labelled rows neither model trained on;
        - ``label_column`` (default None: no quality checks): the label of the replayed rows;
        - ``task_type`` (default None: the version's ``mlops.task_type`` tag, ``binary`` when it has
          none): ``binary``, ``multiclass`` or ``regression``, how the models' outputs are read and which
          quality metrics judge them; a champion tagged with another task is refused;
        - ``timestamp_column`` (default None: none kept): a column of the traffic copied to the
          prediction logs unscored, not fed to the models;
        - ``request_rows`` (default 256): rows per model request.

        ``kserve``:

        - ``service``, ``namespace`` (required): the InferenceService;
        - ``kubernetes_conn_id`` (default ``kubernetes_default``);
        - ``prometheus_conn_id`` (default ``prometheus_default``);
        - ``prometheus_url`` (default None: the connection's host);
        - ``render`` (default ``{}``): more arguments of
          :func:`~mlops_provider.canary.backends.kserve.render_inference_service` (``model_format``
          ``mlflow``, ``protocol_version`` ``v2``, ``service_account_name``, ``resources``, ``labels``,
          ``annotations``).
    :param strategy: the rollout strategy as a dict (see :class:`~mlops_provider.canary.CanaryStrategy`;
        ``min_samples`` and ``min_positives`` set the evidence a quality check needs; the default checks
        judge each task on its own quality metric: ``roc_auc``, ``macro_f1`` or ``rmse``).
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"name", "version", "status", "step", "weight", "reason"}``.
    """

    template_fields = (*CANARY_FIELDS, "step")
    default_aliases = (CHALLENGER,)

    def __init__(self, *, step: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            controller = self.controller(client)
            version = self.resolved_version(controller)
            state = controller.start(version)
            if self.step not in (None, "") and state["status"] == "progressing":
                state = controller.deploy_step(version, int(self.step))
        return _summary(state)


class CanaryStatusOperator(CanaryTask):
    """Return a rollout's state without changing it (for branching and reporting)."""

    template_fields = CANARY_FIELDS

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            controller = self.controller(client, with_backend=False)
            return controller.state(self.resolved_version(controller))


class PromoteModelOperator(CanaryTask):
    """Promote the canary: ``champion`` moves to it, the old champion becomes ``previous``.

    Idempotent: promoting a promoted version changes nothing. Give the task
    ``outlets=[model_alias_asset(name, "champion")]`` so downstream DAGs can schedule on it. When the
    champion is no longer the one the rollout started against, nothing is promoted: the rollout stops
    as in :class:`CanaryDeployOperator` and the task fails with the reason.

    :return: the rollout summary, ``status`` = ``promoted``.
    """

    template_fields = CANARY_FIELDS

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            controller = self.controller(client)
            return _summary(controller.promote(self.resolved_version(controller)))


class RollbackModelOperator(CanaryTask):
    """Roll the canary back: no traffic to it, ``canary`` removed, champion untouched, reason tagged.

    :param reason: why; default a summary of the failed analysis recorded on the version.
    :return: the rollout summary, ``status`` = ``rolled_back``.
    """

    template_fields = (*CANARY_FIELDS, "reason")

    def __init__(self, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hook.session() as client:
            controller = self.controller(client)
            version = self.resolved_version(controller)
            reason = self.reason or _failed_analysis(controller.state(version))
            return _summary(controller.rollback(version, reason))


def _failed_analysis(state: dict[str, Any]) -> str:
    failed = [(s, v) for s, v in sorted(state["verdicts"].items()) if v.get("verdict") != "pass"]
    if not failed:
        return "rolled back by request"
    step, verdict = failed[-1]
    return f"step {step + 1} analysis {verdict['verdict']}: {verdict.get('message', '')}".strip()


class BatchScoreOperator(BaseOperator):
    """Score a batch of entities with the current split: the champion, and the canary's share.

    Entities go to the canary by a stable hash of ``entity_column`` (see :mod:`mlops_provider.ml.scoring`).
    The prediction log at ``output_uri`` is replaced whole, so a re-run writes no duplicate rows.

    :param name: registered model name.
    :param features_uri: parquet file (or local glob: the newest match) of rows to score.
    :param output_uri: where the prediction log goes (local or s3://).
    :param entity_column: the entity key (required: the feature service's join key), which rows are routed on.
    :param keep_columns: columns copied to the log unscored, not fed to the models (e.g. the rows'
        timestamp, a label); default None: none but the entity, every other column is a feature.
    :param task_type: ``binary``, ``multiclass`` or ``regression``: how the models' outputs are read into
        the log's ``probability`` and ``prediction`` (see :func:`mlops_provider.ml.scoring.score`); default
        None: the champion version's ``mlops.task_type`` tag, ``binary`` when it has none.
    :param request_rows: rows per model request.
    :param mlflow_conn_id: the MLflow connection.
    :return: ``{"output_uri", "rows", "champion", "canary", "weight", "task_type", "errors"}``.
    """

    template_fields = (
        "name",
        "features_uri",
        "output_uri",
        "entity_column",
        "model_task_type",
        "mlflow_conn_id",
    )

    def __init__(
        self,
        *,
        name: str,
        features_uri: str,
        output_uri: str,
        entity_column: str,
        keep_columns: list[str] | None = None,
        task_type: str | None = None,
        request_rows: int = 256,
        mlflow_conn_id: str = MLflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.features_uri = features_uri
        self.output_uri = output_uri
        self.entity_column = entity_column
        self.keep_columns = list(keep_columns or [])
        # BaseOperator owns ``task_type`` (the operator's class name), so the model's lives here.
        self.model_task_type = task_type
        self.request_rows = request_rows
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from mlops_provider.canary import CanaryController, CanaryStrategy
        from mlops_provider.ml import scoring, tasks
        from mlops_provider.ml.io import newest_match, read_parquet

        hook = MLflowHook(mlflow_conn_id=self.mlflow_conn_id)
        with hook.session() as client:
            split = CanaryController(client, self.name, CanaryStrategy()).split()
            if split["champion"] is None:
                raise ConfigurationError(
                    f"{self.name!r} has no 'champion' alias: nothing to score with. Run the canary rollout "
                    "(or set the alias) first."
                )
            tags = client.get_model_version(self.name, split["champion"]).tags or {}
        try:
            task_type = tasks.check_task_type(self.model_task_type or tags.get(TASK_TYPE_TAG) or tasks.BINARY)
        except ValueError as err:  # a typo in task_type, or a bad tag on the champion
            raise ConfigurationError(f"Batch scoring of {self.name!r} v{split['champion']}: {err}") from None
        resolved = newest_match(self.features_uri)
        frame = read_parquet(resolved, "Features to score")
        self.log.info(
            "Scoring %d row(s) of %s with the %s models: champion v%s%s.",
            len(frame),
            resolved,
            task_type,
            split["champion"],
            f", canary v{split['canary']} at {split['weight']}%" if split["canary"] else "",
        )
        models = {CHAMPION: (split["champion"], hook.load_model(self.name, split["champion"]))}
        if split["canary"]:
            models[CANARY] = (split["canary"], hook.load_model(self.name, split["canary"]))
        predictions = scoring.score(
            frame,
            models,
            entity_column=self.entity_column,
            weight=split["weight"],
            salt=self.name,
            task_type=task_type,
            keep_columns=self.keep_columns,
            request_rows=self.request_rows,
            log=self.log,
        )
        scoring.write_log(predictions, self.output_uri)
        return {
            "output_uri": self.output_uri,
            "rows": len(predictions),
            "champion": split["champion"],
            "canary": split["canary"],
            "weight": split["weight"],
            "task_type": task_type,
            "errors": int(predictions["error"].notna().sum()),
        }
