"""A trainer of your own, following the trainer contract (docs/training.md, "Bring your own trainer").

Run by ``TrainModelOperator(command=["python", "sklearn_trainer.py"], ...)``, which appends the
contract's arguments. It assumes nothing about the data but what the arguments say: any label, any
keys, any feature columns. Scikit-learn's logistic regression over one-hot categories and scaled
numbers; the MLflow environment (tracking URI, credentials) comes from the operator.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    # Imported here, as the project's lint asks of every module (this file is also read by DAG tooling).
    import mlflow
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlops_provider.ml.reference import log_reference_sample
    from mlops_provider.trainer import RESULT_MARKER

    parser = argparse.ArgumentParser(description=__doc__)
    for flag in ("--training-set", "--label", "--experiment"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--evaluation-set")
    parser.add_argument("--hyperparameters", default="{}")
    parser.add_argument("--id-columns", default="")
    parser.add_argument("--task-type", default="binary", choices=["binary"])  # this one fits 0/1 labels
    parser.add_argument("--timestamp-column")
    parser.add_argument("--features", default="")
    args = parser.parse_args()

    train = pd.read_parquet(args.training_set)
    not_features = {args.label, args.timestamp_column, *filter(None, args.id_columns.split(","))}
    features = list(filter(None, args.features.split(","))) or [
        c
        for c in train.columns
        if c not in not_features and not pd.api.types.is_datetime64_any_dtype(train[c])
    ]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    numbers = [c for c in features if c not in text]
    model = make_pipeline(
        make_column_transformer(
            (
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="unknown"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                text,
            ),
            (make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ),
        LogisticRegression(C=json.loads(args.hyperparameters).get("C", 1.0), max_iter=1000),
    )
    model.fit(train[features], train[args.label])

    mlflow.set_experiment(args.experiment)
    with mlflow.start_run() as run:
        metrics = {"train_rows": float(len(train))}
        if args.evaluation_set:
            held_out = pd.read_parquet(args.evaluation_set)
            scores = model.predict_proba(held_out[features])[:, 1]
            metrics["eval_roc_auc"] = float(roc_auc_score(held_out[args.label], scores))
        mlflow.log_metrics(metrics)
        signature = mlflow.models.infer_signature(train[features], model.predict(train[features]))
        # cloudpickle: skops, the default format, refuses the pipeline's numpy dtypes as untrusted.
        info = mlflow.sklearn.log_model(
            model, name="model", signature=signature, serialization_format="cloudpickle"
        )
        log_reference_sample(train[features])  # what drift detection compares new days with
    result = {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": metrics}
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
