"""Feature drift between a reference sample (the training split) and a current partition.

Numeric features get the population stability index (PSI, over the reference's quantile bins) and a
two-sample Kolmogorov-Smirnov test; categorical features get the Jensen-Shannon distance (base 2,
0 to 1) and a chi-squared test of the current counts against the reference frequencies.

A feature drifts only when an effect size AND a significance test agree: PSI >= ``psi`` and KS
p < ``p_value`` for numbers, JS >= ``js`` and chi-squared p < ``p_value`` for categories. With tens
of thousands of rows a test alone rejects on shifts far too small to matter, and with a few hundred
rows an effect size alone swings on sampling noise; requiring both keeps the alarm for shifts that
are real and large. The dataset drifts when the share of drifted features reaches ``drift_share``.

Nulls are left out of the tests and reported as ``reference_null_fraction`` and
``current_null_fraction`` (also ``null_fraction``); a feature that is all null on one side only counts
as drifted. Two more checks compare plain shares, with no significance test (ten more points of nulls,
or 5% of values in categories never seen, is a changed pipeline or market, not sampling noise): a
feature also drifts when its null share exceeds the reference's by more than
``max_null_fraction_increase`` (values the pipeline starts losing, which the tests cannot see once
nulls are dropped), and a categorical feature when more than ``max_new_category_share`` of its current
non-null values are categories the reference never saw (``new_category_share``). Either names itself
in the feature's ``reason``.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from mlops_provider.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    import pandas as pd

NUMERIC, CATEGORICAL = "numeric", "categorical"
# Threshold overrides under this key apply to every feature (a feature's own entry still wins).
ALL_FEATURES = "*"
OTHER = "__other__"
# Reference categories kept apart; rarer ones share the "other" bucket with unseen values, so the
# chi-squared test is not run on dozens of cells with a handful of expected rows each.
MAX_CATEGORIES = 50
# Pseudo-count added to every reference cell: a category the reference never saw still gets a
# small, finite expected count instead of dividing by zero.
_SMOOTHING = 0.5
# The same floor as scoring.population_stability, so numeric and categorical PSI are comparable.
_PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Thresholds:
    """When a feature drifts; the defaults are the common conventions.

    :param psi: PSI at or above which a numeric feature's shift is large (0.25: "major shift").
    :param psi_warn: PSI at or above which a feature is reported as ``warn`` (0.1: "moderate shift").
    :param p_value: significance level of the KS and chi-squared tests.
    :param js: Jensen-Shannon distance (base 2) at or above which a categorical shift is large.
    :param max_null_fraction_increase: a feature drifts when its current null share exceeds the
        reference's by more than this (0.1: ten points, e.g. 0% to 11%).
    :param max_new_category_share: a categorical feature drifts when more than this share of its
        current non-null values are categories the reference never saw.
    """

    psi: float = 0.25
    psi_warn: float = 0.1
    p_value: float = 0.05
    js: float = 0.1
    max_null_fraction_increase: float = 0.1
    max_new_category_share: float = 0.05

    def __post_init__(self) -> None:
        for name in ("psi", "psi_warn"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"Drift threshold {name!r} must be positive, got {getattr(self, name)!r}."
                )
        for name in ("p_value", "js"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigurationError(
                    f"Drift threshold {name!r} must be in (0, 1], got {getattr(self, name)!r}."
                )
        for name in ("max_null_fraction_increase", "max_new_category_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigurationError(
                    f"Drift threshold {name!r} must be in [0, 1], got {getattr(self, name)!r}."
                )


THRESHOLD_KEYS = tuple(f.name for f in fields(Thresholds))


def check_thresholds(
    thresholds: dict[str, dict[str, float]] | None, features: list[str] | None = None
) -> dict[str, Thresholds]:
    """Validate per-feature overrides and return the thresholds of every named feature (and ``*``).

    :param thresholds: ``{"feature": {"psi": 0.3, "p_value": 0.01, "js": 0.2}}``, any key of
        :class:`Thresholds`; ``"*"`` applies to every feature.
    :param features: the features under test; None skips the check of feature names.
    :raises ConfigurationError: an unknown feature or key, or a value out of range.
    """
    thresholds = thresholds or {}
    if not isinstance(thresholds, dict):
        raise ConfigurationError(
            f"Drift thresholds must be a dict of feature -> {{key: value}}, got {type(thresholds).__name__}."
        )
    if features is not None:
        unknown = sorted(set(thresholds) - set(features) - {ALL_FEATURES})
        if unknown:
            raise ConfigurationError(
                f"Drift thresholds name feature(s) {unknown} that are not tested; features: {sorted(features)}."
            )
    default = _merge(Thresholds(), thresholds.get(ALL_FEATURES), ALL_FEATURES)
    resolved = {ALL_FEATURES: default}
    for feature, spec in thresholds.items():
        if feature != ALL_FEATURES:
            resolved[feature] = _merge(default, spec, feature)
    return resolved


def _merge(base: Thresholds, spec: Any, feature: str) -> Thresholds:
    if spec is None:
        return base
    if not isinstance(spec, dict):
        raise ConfigurationError(
            f"Drift thresholds for {feature!r} must be a dict of {list(THRESHOLD_KEYS)}, got {spec!r}."
        )
    if unknown := sorted(set(spec) - set(THRESHOLD_KEYS)):
        raise ConfigurationError(
            f"Drift thresholds for {feature!r} have unknown key(s) {unknown}; use {list(THRESHOLD_KEYS)}."
        )
    try:
        return replace(base, **{k: float(v) for k, v in spec.items()})
    except (TypeError, ValueError) as err:
        raise ConfigurationError(f"Drift thresholds for {feature!r} must be numbers: {err}.") from None


def feature_kind(values: pd.Series) -> str:
    """``numeric`` for numbers and booleans, ``categorical`` for strings and categories, else ``other``."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return NUMERIC
    if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values):
        return CATEGORICAL
    return str(values.dtype)


def detect(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    thresholds: dict[str, dict[str, float]] | None = None,
    drift_share: float = 0.3,
) -> dict[str, Any]:
    """Test every feature for drift and decide whether the dataset drifted.

    :param reference: the reference sample (the model's training split).
    :param current: the partition to check.
    :param features: columns to test; default every column of ``reference``.
    :param categorical: features to test as categories even when their dtype is numeric (e.g. integer
        codes); strings and pandas categories are always categorical, numbers and booleans otherwise
        numeric.
    :param thresholds: per-feature overrides of :class:`Thresholds`, ``{"feature": {"psi": 0.3}}``;
        ``"*"`` overrides every feature.
    :param drift_share: the dataset drifts when at least this share of the tested features drifts.
    :return: a JSON-serialisable report: ``features`` (per feature: ``type``, ``psi``, ``ks_p`` or
        ``js`` and ``chi2_p``, ``drifted``, ``status`` ok/warn/drift, ``reason`` when a null or
        new-category check (or an all-null side) made it drift, ``thresholds``, row counts,
        ``null_fraction`` (the current one), ``reference_null_fraction``, ``current_null_fraction``,
        ``new_category_share`` (None for numeric features)), ``features_tested``,
        ``drifted_features``, ``drift_share``,
        ``drift_share_threshold``, ``dataset_drift``, ``reference_rows``, ``current_rows``.
    :raises ConfigurationError: a feature missing from either frame, a column whose type differs
        between them or cannot be tested, bad thresholds or ``drift_share``.
    :raises DataNotFound: an empty reference or current frame.
    """
    if not 0 < drift_share <= 1:
        raise ConfigurationError(f"drift_share must be in (0, 1], got {drift_share!r}.")
    features = list(features) if features is not None else [str(c) for c in reference.columns]
    if not features:
        raise ConfigurationError("Drift detection needs at least one feature; the reference has no columns.")
    for side, frame in (("reference", reference), ("current", current)):
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise ConfigurationError(
                f"Feature(s) {missing} are missing from the {side} data; it has {sorted(map(str, frame.columns))}."
            )
    if reference.empty:
        raise DataNotFound("The drift reference sample has no rows; retrain the model to log a new one.")
    if current.empty:
        raise DataNotFound("The current partition has no rows; there is nothing to test for drift.")
    if unknown := sorted(set(categorical or []) - set(features)):
        raise ConfigurationError(f"Categorical feature(s) {unknown} are not among the tested features.")
    resolved = check_thresholds(thresholds, features)
    kinds = _kinds(reference, current, features, categorical)
    report_features = {}
    for feature in features:
        limits = resolved.get(feature, resolved[ALL_FEATURES])
        test = _numeric if kinds[feature] == NUMERIC else _categorical
        result = test(reference[feature], current[feature], limits)
        report_features[feature] = _with_counts(
            _with_checks(result, reference[feature], current[feature], limits),
            reference[feature],
            current[feature],
            limits,
        )
    drifted = [f for f, r in report_features.items() if r["drifted"]]
    share = len(drifted) / len(features)
    return {
        "features": report_features,
        "features_tested": len(features),
        "drifted_features": drifted,
        "drift_share": share,
        "drift_share_threshold": float(drift_share),
        "dataset_drift": share >= drift_share,
        "reference_rows": len(reference),
        "current_rows": len(current),
    }


def _kinds(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], categorical: list[str] | None
) -> dict[str, str]:
    kinds = {}
    for feature in features:
        ref_kind, cur_kind = feature_kind(reference[feature]), feature_kind(current[feature])
        if ref_kind != cur_kind:
            raise ConfigurationError(
                f"Feature {feature!r} changed type: {ref_kind} ({reference[feature].dtype}) in the reference, "
                f"{cur_kind} ({current[feature].dtype}) in the current data; fix the feature pipeline or "
                "retrain on the new type."
            )
        if feature in (categorical or ()):
            kinds[feature] = CATEGORICAL
        elif ref_kind in (NUMERIC, CATEGORICAL):
            kinds[feature] = ref_kind
        else:
            raise ConfigurationError(
                f"Feature {feature!r} has dtype {reference[feature].dtype}, which drift detection cannot "
                "test; leave it out of the features or list it in categorical."
            )
    return kinds


def _numeric(reference: pd.Series, current: pd.Series, limits: Thresholds) -> dict[str, Any]:
    import pandas as pd
    from scipy import stats

    from mlops_provider.ml.scoring import population_stability

    ref = pd.to_numeric(reference, errors="coerce").astype("float64").dropna().to_numpy()
    cur = pd.to_numeric(current, errors="coerce").astype("float64").dropna().to_numpy()
    result: dict[str, Any] = {"type": NUMERIC, "psi": None, "ks_statistic": None, "ks_p": None}
    if ref.size == 0 or cur.size == 0:
        return _all_null(result, ref.size == 0)
    # The exact KS distribution gives up (with a warning) on large samples, where asymp is accurate.
    ks = stats.ks_2samp(ref, cur, method="asymp" if min(ref.size, cur.size) > 100 else "auto")
    result.update(
        psi=population_stability(ref, cur),
        ks_statistic=float(ks.statistic),
        ks_p=float(ks.pvalue),
    )
    result["drifted"] = result["psi"] >= limits.psi and result["ks_p"] < limits.p_value
    result["status"] = _status(result["drifted"], result["psi"] >= limits.psi_warn)
    return result


def _categorical(reference: pd.Series, current: pd.Series, limits: Thresholds) -> dict[str, Any]:
    import numpy as np
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    ref, cur = reference.dropna().astype(str), current.dropna().astype(str)
    result: dict[str, Any] = {
        "type": CATEGORICAL,
        "psi": None,
        "js": None,
        "chi2_statistic": None,
        "chi2_p": None,
        "unseen_fraction": None,
    }
    if ref.empty or cur.empty:
        return _all_null(result, ref.empty)
    ref_counts = ref.value_counts()
    kept = list(ref_counts.index[:MAX_CATEGORIES])
    cur_counts = cur.value_counts()
    unseen = float(cur_counts[~cur_counts.index.isin(ref_counts.index)].sum() / len(cur))
    cells = [*kept, OTHER]
    observed_ref = np.array(
        [*ref_counts.iloc[:MAX_CATEGORIES], ref_counts.iloc[MAX_CATEGORIES:].sum()], float
    )
    in_kept = cur_counts.reindex(kept, fill_value=0).to_numpy(dtype=float)
    observed_cur = np.append(in_kept, len(cur) - in_kept.sum())
    if observed_ref[-1] == 0 and observed_cur[-1] == 0:  # no "other" on either side: not a cell
        cells, observed_ref, observed_cur = cells[:-1], observed_ref[:-1], observed_cur[:-1]
    expected_freq = (observed_ref + _SMOOTHING) / (observed_ref + _SMOOTHING).sum()
    ref_freq, cur_freq = observed_ref / observed_ref.sum(), observed_cur / observed_cur.sum()
    if len(cells) > 1:
        chi2 = stats.chisquare(observed_cur, expected_freq * observed_cur.sum())
        chi2_statistic, chi2_p = float(chi2.statistic), float(chi2.pvalue)
    else:  # one category on both sides: nothing can have moved
        chi2_statistic, chi2_p = 0.0, 1.0
    e, a = np.clip(ref_freq, _PSI_FLOOR, None), np.clip(cur_freq, _PSI_FLOOR, None)
    result.update(
        psi=float(np.sum((a - e) * np.log(a / e))),
        js=float(jensenshannon(ref_freq, cur_freq, base=2)),
        chi2_statistic=chi2_statistic,
        chi2_p=chi2_p,
        unseen_fraction=unseen,
    )
    result["drifted"] = result["js"] >= limits.js and chi2_p < limits.p_value
    result["status"] = _status(
        result["drifted"], result["psi"] >= limits.psi_warn or result["js"] >= limits.js
    )
    return result


def _all_null(result: dict[str, Any], reference_side: bool) -> dict[str, Any]:
    # Values that vanish (or appear) wholesale are a broken pipeline, the largest drift there is.
    side = "reference" if reference_side else "current"
    return {**result, "drifted": True, "status": "drift", "reason": f"every value is null in the {side} data"}


def _with_checks(
    result: dict[str, Any], reference: pd.Series, current: pd.Series, limits: Thresholds
) -> dict[str, Any]:
    """Add the null-share and new-category checks, which drift a feature whatever its tests say."""
    reference_nulls, current_nulls = float(reference.isna().mean()), float(current.isna().mean())
    new_share = result.get("unseen_fraction") if result["type"] == CATEGORICAL else None
    result.update(null_fraction=current_nulls, new_category_share=new_share)
    if result.get("reason"):  # all null on one side: already drifted, and said why
        return result
    failed = _failed_checks(reference_nulls, current_nulls, new_share, asdict(limits))
    if failed:
        result.update(drifted=True, status="drift", reason="; ".join(failed.values()))
    return result


def _failed_checks(
    reference_nulls: float, current_nulls: float, new_share: float | None, limits: dict[str, Any]
) -> dict[str, str]:
    """The null-share and new-category checks that fail, each with its reason (report field -> text).

    ``limits`` is a :class:`Thresholds` as a dict; one from a report written before these checks
    existed lacks their keys, and then they are not judged.
    """
    failed = {}
    allowed = limits.get("max_null_fraction_increase")
    # Rounded so that 0.3 - 0.2 is not read as just past an increase of 0.1.
    if allowed is not None and round(current_nulls - reference_nulls, 12) > allowed:
        failed["null_fraction"] = (
            f"its null share rose from {reference_nulls:.1%} in the reference to {current_nulls:.1%} "
            f"(allowed increase {allowed:.1%})"
        )
    cap = limits.get("max_new_category_share")
    if cap is not None and new_share is not None and new_share > cap:
        failed["new_category_share"] = (
            f"{new_share:.1%} of its current values are categories the reference never saw "
            f"(threshold {cap:.1%})"
        )
    return failed


def _status(drifted: bool, warn: bool) -> str:
    return "drift" if drifted else "warn" if warn else "ok"


def _with_counts(
    result: dict[str, Any], reference: pd.Series, current: pd.Series, limits: Thresholds
) -> dict[str, Any]:
    result.update(
        thresholds=asdict(limits),
        reference_rows=len(reference),
        current_rows=len(current),
        reference_null_fraction=float(reference.isna().mean()),
        current_null_fraction=float(current.isna().mean()),
    )
    # NaN and infinity are not JSON; a PSI or statistic that overflowed is reported as None.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}


def p_value(feature_report: dict[str, Any]) -> float | None:
    """The feature's significance test p-value: KS for numeric, chi-squared for categorical."""
    return feature_report.get("ks_p") if feature_report["type"] == NUMERIC else feature_report.get("chi2_p")


def describe(feature: str, feature_report: dict[str, Any]) -> str:
    """One human line on why ``feature`` drifted (or did not): the reason of a null or new-category
    check first, then the tests, the new-category share and the null shares."""
    r, limits = feature_report, feature_report["thresholds"]
    verdict = f"Feature {feature!r} {'drifted' if r['drifted'] else 'is stable'}"
    stat = r.get("ks_p") if r["type"] == NUMERIC else r.get("chi2_p")
    if stat is None:  # all null on one side: no test ran
        return f"{verdict}: {r.get('reason') or 'no test ran'}."
    if r["type"] == NUMERIC:
        detail = (
            f"PSI {_fmt(r['psi'], '.3f')} (threshold {limits['psi']:g}), "
            f"KS p={stat:.2g} (threshold {limits['p_value']:g})"
        )
    else:
        detail = (
            f"JS distance {_fmt(r['js'], '.3f')} (threshold {limits['js']:g}), "
            f"chi-squared p={stat:.2g} (threshold {limits['p_value']:g}), PSI {_fmt(r['psi'], '.3f')}"
        )
    # Reports written before the new-category check carry only unseen_fraction, the same share.
    new_share = r.get("new_category_share", r.get("unseen_fraction"))
    nulls, reference_nulls = r["current_null_fraction"], r["reference_null_fraction"]
    failed = _failed_checks(reference_nulls, nulls, new_share, limits)  # already in the reason
    if new_share is not None and "new_category_share" not in failed:
        cap = limits.get("max_new_category_share")
        detail += f", {new_share:.1%} new categories" + (f" (threshold {cap:.1%})" if cap is not None else "")
    if (nulls or reference_nulls) and "null_fraction" not in failed:
        allowed = limits.get("max_null_fraction_increase")
        detail += f", null share {nulls:.1%} (reference {reference_nulls:.1%}" + (
            f", allowed increase {allowed:.1%})" if allowed is not None else ")"
        )
    return f"{verdict}: {r['reason']}; {detail}." if r.get("reason") else f"{verdict}: {detail}."


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return html.escape(str(value))


def render_html(report: dict[str, Any], title: str = "Feature drift report") -> str:
    """A self-contained HTML page of ``report`` (inline CSS, no scripts or external assets)."""
    verdict = "DRIFT" if report["dataset_drift"] else "no drift"
    columns = (
        "type",
        "status",
        "psi",
        "ks_p",
        "js",
        "chi2_p",
        "reference_null_fraction",
        "current_null_fraction",
        "new_category_share",
        "reason",
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("feature", *columns))
    rows = []
    for feature, r in report["features"].items():
        cells = "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns)
        rows.append(f'<tr class="{html.escape(r["status"])}"><td>{html.escape(feature)}</td>{cells}</tr>')
    thresholds = html.escape(json.dumps({f: r["thresholds"] for f, r in report["features"].items()}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.drift {{ background: #fdd; }}
tr.warn {{ background: #ffd; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Dataset: <strong>{verdict}</strong>; {len(report["drifted_features"])} of {report["features_tested"]}
feature(s) drifted (share {report["drift_share"]:.2f}, threshold {report["drift_share_threshold"]:.2f});
{report["reference_rows"]} reference row(s), {report["current_rows"]} current row(s).</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>
<p>A numeric feature drifts when PSI &ge; psi and KS p &lt; p_value; a categorical one when the
Jensen-Shannon distance &ge; js and chi-squared p &lt; p_value. Any feature also drifts when its null
share exceeds the reference's by more than max_null_fraction_increase, and a categorical one when more
than max_new_category_share of its current values are categories the reference never saw (the reason
column says which).</p>
<details><summary>Thresholds</summary><pre>{thresholds}</pre></details>
</body></html>
"""
