"""The energy example's trainer: a scikit-learn regressor that follows the trainer contract.

Run by ``TrainModelOperator(command=[python, "demand_trainer.py"], task_type="regression", ...)``, which
appends the contract's arguments (docs/training.md, "Bring your own trainer"). Ridge regression over
one-hot categories and scaled numbers; the label, the id columns and the timestamp are never features.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version


def main() -> None:
    # Imported here, as the project's lint asks of every module outside the provider's trainer.
    import mlflow
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlops_provider.constants import TASK_TYPE_TAG
    from mlops_provider.ml.reference import log_reference_sample
    from mlops_provider.trainer import RESULT_MARKER

    parser = argparse.ArgumentParser(description=__doc__)
    for flag in ("--training-set", "--label", "--experiment"):
        parser.add_argument(flag, required=True)
    for flag in ("--evaluation-set", "--timestamp-column", "--features"):
        parser.add_argument(flag)
    parser.add_argument("--hyperparameters", default="{}")
    parser.add_argument("--id-columns", default="")
    parser.add_argument("--task-type", default="regression")
    args, _ = parser.parse_known_args()  # a newer operator may pass more flags: not ours, ignored
    if args.task_type != "regression":
        refuse(f"this trainer fits regressions only, not --task-type {args.task_type}")

    train = pd.read_parquet(args.training_set)
    not_features = {args.label, args.timestamp_column, *args.id_columns.split(",")}
    features = (
        (args.features or "").split(",")
        if args.features
        else [
            c
            for c in train.columns
            if c not in not_features and not pd.api.types.is_datetime64_any_dtype(train[c])
        ]
    )
    if leaked := sorted(not_features & set(features)):
        refuse(f"--features names the label, an id column or the timestamp: {leaked}")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    numbers = [c for c in features if c not in text]
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), text), (StandardScaler(), numbers)),
        Ridge(alpha=float(json.loads(args.hyperparameters).get("alpha", 1.0))),
    )
    model.fit(train[features], train[args.label])

    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        mlflow.set_tag(TASK_TYPE_TAG, "regression")
        metrics = {"train_rows": float(len(train))}
        if args.evaluation_set:
            held_out = pd.read_parquet(args.evaluation_set)
            truth, predicted = held_out[args.label], model.predict(held_out[features])
            metrics |= {
                "eval_rows": float(len(held_out)),
                "eval_rmse": float(root_mean_squared_error(truth, predicted)),
                "eval_mae": float(mean_absolute_error(truth, predicted)),
                "eval_r2": float(r2_score(truth, predicted)),
            }
        mlflow.log_metrics(metrics)
        signature = mlflow.models.infer_signature(train[features], model.predict(train[features]))
        # cloudpickle: skops, the default format, refuses the pipeline's numpy dtypes as untrusted. The
        # requirements are named, which spares MLflow inferring them by loading the model in a subprocess.
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            serialization_format="cloudpickle",
            pip_requirements=[f"{p}=={version(p)}" for p in ("scikit-learn", "cloudpickle", "pandas")],
        )
        log_reference_sample(train[features])  # what drift detection compares new days with
    result = {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": metrics}
    print(RESULT_MARKER + json.dumps(result), flush=True)


def refuse(reason: str) -> None:
    """Exit with the contract's "cannot train on this" code (not retried), saying why."""
    from mlops_provider.trainer import EXIT_BAD_INPUT

    print(f"demand_trainer: {reason}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
