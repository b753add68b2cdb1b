"""Run the reference trainer in a Kubernetes GPU pod.

GPUTrainingOperator subclasses KubernetesPodOperator, so the cncf provider is imported at top level;
the kubernetes client models are imported where pods are built. DAG files never import this module:
TrainModelOperator loads it inside execute().
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf

# A subclass needs its base class at import; the kubernetes client itself loads only when pods are built.
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: TID253

from mlops_provider.exceptions import ConfigurationError
from mlops_provider.hooks.mlflow import MLflowHook
from mlops_provider.trainer.command import REFERENCE_TRAINER, entrypoint_argv, trainer_arguments

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

DEFAULT_IMAGE = "ghcr.io/airflow-provider-mlops/trainer:0.1.0"
# Secret key -> environment variable the MLflow client reads.
MLFLOW_SECRET_KEYS = {
    "username": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
    "token": "MLFLOW_TRACKING_TOKEN",
}
RUN_AS_USER = 1000  # the trainer image's non-root user


def restricted_security_context() -> k8s.V1SecurityContext:
    """Container context meeting the "restricted" Pod Security Standard, with a read-only root."""
    from kubernetes.client import models as k8s

    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


class GPUTrainingOperator(KubernetesPodOperator):
    """Run ``python -m mlops_provider.trainer`` in a pod with GPUs, shared memory and a locked-down context.

    The pod gets MLFLOW_TRACKING_URI from the MLflow connection's host (not a secret) and MLflow
    credentials only as references to the Kubernetes Secret ``mlflow_secret_name`` (keys
    ``username``, ``password``, ``token``; each optional). Nothing secret is read from the Airflow
    connection, so nothing secret can land in the pod spec, the task log or XCom.

    :param training_set_uri: parquet training set, usually ``s3://...``. (templated)
    :param evaluation_set_uri: optional held-out parquet set scored by the kept model (``eval_*``
        metrics), never fitted or early-stopped on; None or empty for none. (templated)
    :param label_column: the label column (``label`` is taken by BaseOperator). (templated)
    :param task_type: ``binary``, ``multiclass`` or ``regression`` (:mod:`mlops_provider.ml.tasks`). (templated)
    :param timestamp_column: the rows' event-time column; None: the trainer reads it from the training
        set's metadata. (templated)
    :param feature_columns: the exact feature columns; None: every other column. (templated)
    :param hyperparameters: merged over the trainer's defaults. (templated)
    :param experiment: MLflow experiment name. (templated)
    :param id_columns: entity keys and other bookkeeping columns that are not features; default none.
        (templated)
    :param image: trainer image. (templated)
    :param command: your trainer's entrypoint in ``image``, e.g. ``["python", "/app/train.py"]``; the
        contract's arguments (:func:`~mlops_provider.trainer.command.trainer_arguments`) follow it.
        None runs the reference trainer (``python -m mlops_provider.trainer``). (templated)
    :param gpus: GPUs to request (0 runs on CPU nodes).
    :param gpu_resource: extended resource name of the GPU device plugin.
    :param node_selector: e.g. ``{"nvidia.com/gpu.present": "true"}``. (templated)
    :param tolerations: None tolerates ``<gpu_resource>:NoSchedule`` when ``gpus > 0``; [] tolerates nothing.
    :param cpu_request: / :param memory_request: / :param memory_limit: / :param cpu_limit:
        container resources; no CPU limit by default, since CFS throttling slows data loading.
    :param shm_size: size of the in-memory ``/dev/shm`` (PyTorch DataLoader workers share tensors there).
    :param tmp_size: size of the writable ``/tmp`` (the root filesystem is read-only).
    :param mlflow_conn_id: connection whose host is the tracking URI seen from the pod. (templated)
    :param tracking_uri: overrides that host when the pod reaches MLflow at another address. (templated)
    :param mlflow_secret_name: Kubernetes Secret with MLflow credentials; None for none.
    :param on_finish_action: defaults to ``delete_succeeded_pod``: failed pods stay for ``kubectl logs``
        and ``describe``; successful ones go, since their logs are already in the task log.
    :param kwargs: any other KubernetesPodOperator argument (namespace, service_account_name,
        startup_timeout_seconds, schedule_timeout_seconds, deferrable, env_vars, ...).
    :return: the trainer's ``{"run_id", "model_uri", "metrics"}`` through the XCom sidecar.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "training_set_uri",
        "evaluation_set_uri",
        "label_column",
        "hyperparameters",
        "experiment",
        "id_columns",
        "model_task_type",
        "timestamp_column",
        "feature_columns",
        "command",
        "mlflow_conn_id",
        "tracking_uri",
    )

    def __init__(
        self,
        *,
        training_set_uri: str,
        label_column: str,
        experiment: str,
        hyperparameters: dict[str, Any] | None = None,
        id_columns: list[str] | str | None = None,
        evaluation_set_uri: str | None = None,
        task_type: str = "binary",
        timestamp_column: str | None = None,
        feature_columns: list[str] | str | None = None,
        image: str = DEFAULT_IMAGE,
        command: list[str] | str | None = None,
        gpus: int = 1,
        gpu_resource: str = "nvidia.com/gpu",
        tolerations: list[k8s.V1Toleration] | None = None,
        cpu_request: str = "2",
        memory_request: str = "8Gi",
        memory_limit: str = "16Gi",
        cpu_limit: str | None = None,
        shm_size: str = "2Gi",
        tmp_size: str = "4Gi",
        mlflow_conn_id: str = "mlflow_default",
        tracking_uri: str | None = None,
        mlflow_secret_name: str | None = "mlflow-credentials",  # noqa: S107 - a Secret's name, not a secret
        namespace: str | None = None,
        name: str = "mlops-trainer",
        startup_timeout_seconds: int = 600,
        schedule_timeout_seconds: int | None = 1800,
        on_finish_action: str = "delete_succeeded_pod",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        from kubernetes.client import models as k8s

        if gpus < 0:
            raise ConfigurationError(f"gpus must be >= 0, got {gpus}")
        if tolerations is None and gpus > 0:
            tolerations = [k8s.V1Toleration(key=gpu_resource, operator="Exists", effect="NoSchedule")]
        limits = {"memory": memory_limit, **({"cpu": cpu_limit} if cpu_limit else {})}
        if gpus:
            limits[gpu_resource] = str(gpus)  # extended resources: the request defaults to the limit
        super().__init__(
            image=image,
            name=name,
            namespace=namespace,
            cmds=["python"],
            arguments=[],  # filled from the rendered fields in build_pod_request_obj
            container_resources=k8s.V1ResourceRequirements(
                requests={"cpu": cpu_request, "memory": memory_request}, limits=limits
            ),
            tolerations=tolerations,
            volumes=[
                k8s.V1Volume(
                    name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=shm_size)
                ),
                k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=tmp_size)),
            ],
            volume_mounts=[
                k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),  # noqa: S108 - the pod's own memory emptyDir
                k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108 - the pod's own emptyDir
            ],
            security_context=k8s.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=RUN_AS_USER,
                run_as_group=RUN_AS_USER,
                fs_group=RUN_AS_USER,
                seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
            ),
            container_security_context=restricted_security_context(),
            xcom_sidecar_container_security_context=restricted_security_context(),
            startup_timeout_seconds=startup_timeout_seconds,
            schedule_timeout_seconds=schedule_timeout_seconds,
            on_finish_action=on_finish_action,
            deferrable=deferrable,
            do_xcom_push=True,
            **kwargs,
        )
        self.training_set_uri = training_set_uri
        self.label_column = label_column
        self.hyperparameters = hyperparameters
        self.experiment = experiment
        self.id_columns = id_columns
        self.evaluation_set_uri = evaluation_set_uri
        self.model_task_type = task_type
        self.timestamp_column = timestamp_column
        self.feature_columns = feature_columns
        self.gpus = gpus
        self.command = command
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri
        self.mlflow_secret_name = mlflow_secret_name
        self._user_env_vars = self.env_vars

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """Add the trainer's arguments and MLflow environment, then let KPO build the pod."""
        contract = trainer_arguments(
            self.training_set_uri,
            label=self.label_column,
            experiment=self.experiment,
            hyperparameters=self.hyperparameters,
            id_columns=self.id_columns,
            evaluation_set_uri=self.evaluation_set_uri,
            task_type=self.model_task_type,
            timestamp_column=self.timestamp_column,
            feature_columns=self.feature_columns,
        )
        entrypoint = entrypoint_argv(self.command) or ["python", *REFERENCE_TRAINER]
        self.cmds, self.arguments = entrypoint[:1], [*entrypoint[1:], *contract]
        # KPO converts self.env_vars in place, so rebuild from the user's list on every call.
        self.env_vars = [*_as_env_list(self._user_env_vars), *self._trainer_env()]
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def _trainer_env(self) -> list[k8s.V1EnvVar]:
        from kubernetes.client import models as k8s

        # Only the URI and the client settings come from the connection: login, password and token stay
        # in Airflow, and the pod reads them from the Secret.
        hook = MLflowHook(self.mlflow_conn_id)
        env = [
            k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=self.tracking_uri or hook.tracking_uri),
            *(k8s.V1EnvVar(name=k, value=v) for k, v in sorted(hook.client_settings().items())),
            # Home and temp on the writable emptyDir: the root filesystem is read-only.
            k8s.V1EnvVar(name="HOME", value="/tmp"),  # noqa: S108 - the pod's own emptyDir, see volumes
            k8s.V1EnvVar(name="TMPDIR", value="/tmp"),  # noqa: S108 - the pod's own emptyDir, see volumes
            k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
        ]
        if self.mlflow_secret_name:
            env += [
                k8s.V1EnvVar(
                    name=variable,
                    value_from=k8s.V1EnvVarSource(
                        secret_key_ref=k8s.V1SecretKeySelector(
                            name=self.mlflow_secret_name, key=key, optional=True
                        )
                    ),
                )
                for key, variable in MLFLOW_SECRET_KEYS.items()
            ]
        return env


def _as_env_list(env_vars: Any) -> list[k8s.V1EnvVar]:
    from kubernetes.client import models as k8s

    if not env_vars:
        return []
    if isinstance(env_vars, dict):
        return [k8s.V1EnvVar(name=k, value=str(v)) for k, v in env_vars.items()]
    return list(env_vars)
