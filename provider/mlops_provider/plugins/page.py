"""The HTML page of the "ML models" view: one section per model, with server-rendered SVG plots.

Everything is inline (CSS, SVG, one small script under a CSP nonce); nothing is loaded from elsewhere,
and every value from MLflow is escaped. The input is :func:`mlops_provider.plugins.overview.model_overview`.
"""

from __future__ import annotations

import html
import math
from typing import Any

from mlops_provider.trainer import BEST_EPOCH_METRIC, EARLY_STOP_METRIC_PREFIX, EVAL_METRIC_PREFIX

# Colours of a rollout event, by the controller's action names (mlops_provider.canary).
_ACTION_COLOURS = {
    "promote": "#2e7d32",
    "hold_passed": "#2e7d32",
    "rollback": "#c62828",
    "analysis_failed": "#c62828",
    "analysis_inconclusive": "#ef6c00",
}
_EVENT_COLOUR = "#1565c0"
_CANARY, _CHAMPION = "#ef6c00", "#2e7d32"
_LINEAGE_FIRST = (
    "dag_id",
    "dag_run_id",
    "data_interval_start",
    "data_interval_end",
    "training_set_uri",
    "data_fingerprint",
    "code_version",
    "hyperparameters_hash",
)
_HISTORY_SHOWN = 12

# Links inside the Airflow UI's sandboxed iframe can neither open a tab nor navigate the top window;
# the frame is same-origin, so the script asks the UI's router to navigate (Airflow links) or the top
# window to open a tab (MLflow links). Opened on its own, the page keeps the links' default behaviour.
_SCRIPT = """
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[data-nav]");
  if (!link || window.top === window) return;
  try {
    if (link.dataset.nav === "airflow") {
      window.top.history.pushState(null, "", link.pathname + link.search + link.hash);
      window.top.dispatchEvent(new PopStateEvent("popstate"));
    } else {
      window.top.open(link.href, "_blank", "noopener");
    }
    event.preventDefault();
  } catch (err) { /* not same-origin: let the browser follow the link */ }
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #1a1a1a; font-size: 14px; }
h1 { font-size: 1.4em; margin: 0 0 .4em; } h2 { font-size: 1.2em; margin: 0 0 .4em; }
h3 { font-size: 1em; margin: 1em 0 .4em; }
section.model { border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin: 0 0 1.2em; }
table { border-collapse: collapse; width: 100%; } th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top;
  text-align: left; }
.badge { display: inline-block; border-radius: 3px; padding: 0 6px; margin-right: 3px; color: #fff;
  background: #555; font-size: .85em; }
.badge.champion { background: #2e7d32; } .badge.canary { background: #ef6c00; }
.badge.challenger { background: #1565c0; } .badge.previous { background: #6d4c41; }
.pass { color: #2e7d32; } .fail, .drift { color: #c62828; font-weight: 600; }
.insufficient_evidence { color: #ef6c00; font-weight: 600; }
.message { border-radius: 6px; padding: .8em 1em; background: #fff3e0; border: 1px solid #ef6c00; }
.message.error { background: #ffebee; border-color: #c62828; }
dl { display: grid; grid-template-columns: max-content auto; gap: 1px 10px; margin: 0; }
dt { color: #555; } dd { margin: 0; overflow-wrap: anywhere; }
td.metrics dd { white-space: nowrap; }
code { font-size: .9em; } svg { display: block; margin: .3em 0; }
.muted { color: #666; }
"""


def render_page(
    models: list[dict[str, Any]] | None,
    *,
    source: str,
    error: str | None = None,
    airflow_root: str = "../",
    nonce: str = "",
) -> str:
    """The whole page.

    :param models: the overview; None when it could not be read (``error`` says why).
    :param source: where the models come from (the MLflow URI, without credentials), for messages.
    :param error: a message shown instead of the models.
    :param airflow_root: the Airflow UI root relative to the page, for links to DAG runs.
    :param nonce: the CSP nonce of the inline script.
    """
    if error is not None:
        body = f'<p class="message error" role="alert">{_e(error)}</p>'
    elif not models:
        body = (
            f'<p class="message" role="status">No registered model yet in MLflow at {_e(source)}. A model '
            "appears here once the training pipeline registered one.</p>"
        )
    else:
        body = "\n".join(_model(m, airflow_root) for m in models)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ML models</title>
<style>{_STYLE}</style></head>
<body>
<h1>ML models</h1>
<p class="muted">Registered models in MLflow at {_e(source)}: aliases, canary rollouts and drift.</p>
{body}
<script nonce="{_e(nonce)}">{_SCRIPT}</script>
</body></html>
"""


def _model(model: dict[str, Any], airflow_root: str) -> str:
    name = model["name"]
    parts = [
        f'<section class="model" data-model="{_e(name)}">',
        f"<h2>{_e(name)} {_mlflow_link(model['url'], 'in MLflow')}</h2>",
        _split(model["canary"]),
    ]
    if model["versions"]:
        rows = "\n".join(_version_row(v, airflow_root) for v in model["versions"])
        parts.append(
            '<table class="versions"><thead><tr><th>Version</th><th>Held-out evidence</th>'
            "<th>Training run</th><th>Lineage</th><th>Canary</th></tr></thead>"
            f"<tbody>\n{rows}\n</tbody></table>"
        )
    else:
        parts.append('<p class="muted">No version registered yet.</p>')
    parts.append(_rollout(model["rollout"]))
    parts.append(_drift(model["drift"]))
    parts.append("</section>")
    return "\n".join(parts)


def _split(split: dict[str, Any]) -> str:
    champion = f"v{split['champion']}" if split["champion"] else "none"
    if split["canary"] is None:
        return (
            f'<p class="split">Canary weight: <strong data-canary-weight="0">0%</strong> (no rollout in '
            f"progress; champion {_e(champion)} serves all traffic)</p>"
        )
    weight = int(split["weight"])
    return (
        f'<p class="split">Canary weight: <strong data-canary-weight="{weight}">{weight}%</strong> '
        f"(canary v{_e(split['canary'])}; champion {_e(champion)} serves {100 - weight}%)</p>"
    )


def _version_row(version: dict[str, Any], airflow_root: str) -> str:
    badges = "".join(f'<span class="badge {_e(a)}">{_e(a)}</span>' for a in version["aliases"]) or (
        '<span class="badge">latest</span>'
    )
    head = (
        f"{badges}<br><strong>v{_e(version['version'])}</strong> {_mlflow_link(version['url'], 'MLflow')}"
        f'<br><span class="muted">{_e(version["status"])}, {_e(version["created"] or "")}</span>'
    )
    held_out, training = _metric_groups(version["metrics"])
    run = _mlflow_link(version["run_url"], "training run") if version["run_id"] else ""
    lineage = dict(version["lineage"])
    dag_run = version["dag_run"]
    if dag_run:
        link = _link(f"{airflow_root}{dag_run['path']}", dag_run["run_id"], nav="airflow")
        lineage["dag_run_id"] = link
    ordered = {k: lineage.pop(k) for k in _LINEAGE_FIRST if k in lineage} | lineage
    trusted = {"dag_run_id"} if dag_run else set()
    canary = version["canary"]
    canary_html = (
        f"{_e(canary['status'])}, weight {int(canary['weight'])}%"
        + (f'<br><span class="muted">{_e(canary["reason"])}</span>' if canary["reason"] else "")
        if canary["status"]
        else '<span class="muted">never rolled out</span>'
    )
    return (
        f'<tr data-version="{_e(version["version"])}"><td>{head}</td>'
        f'<td class="held-out">{_gate(version["gate"])}{held_out}</td>'
        f'<td class="metrics">{training}{run}</td><td>{_dl(ordered, trusted)}</td><td>{canary_html}</td></tr>'
    )


def _gate(tags: dict[str, Any]) -> str:
    """The gate's decision, its evidence line, then its other tags."""
    gate = dict(tags)
    decision = gate.pop("decision", None)
    verdict = (
        f'<span class="{_e(decision)}">{_e(decision)}</span>'
        if decision
        else '<span class="muted">not gated</span>'
    )
    return f"<strong>Gate</strong>: {verdict}{_gate_evidence(gate)}{_dl(gate)}"


def _metric_groups(metrics: dict[str, Any]) -> tuple[str, str]:
    """The run's metrics as HTML: (the evaluation set's, held out; early stopping's, then the rest)."""
    held_out: dict[str, Any] = {}
    early: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in metrics.items():
        if name.startswith(EVAL_METRIC_PREFIX):
            held_out[name.removeprefix(EVAL_METRIC_PREFIX)] = value
        elif name.startswith(EARLY_STOP_METRIC_PREFIX) or name == BEST_EPOCH_METRIC:
            early[name.removeprefix(EARLY_STOP_METRIC_PREFIX)] = value
        else:
            other[name] = value
    evaluation = (
        f'<br><strong>Evaluation set</strong> <span class="muted">(trainer, held out)</span>{_metrics_dl(held_out)}'
        if held_out
        else '<br><span class="muted">no evaluation set in the training run</span>'
    )
    training = _metrics_dl(other)
    if early:
        training = (
            '<strong>Early stopping</strong> <span class="muted">(the slice of the training window that '
            f"picked the epoch; not held out)</span>{_metrics_dl(early)}{training}"
        )
    return evaluation, training


# Metrics listed first, in this order (names without their prefix); the others follow by name.
_METRIC_ORDER = ("roc_auc", "log_loss", "rows", "positives", BEST_EPOCH_METRIC)


def _metrics_dl(metrics: dict[str, Any]) -> str:
    def rank(name: str) -> tuple[int, str]:
        return (_METRIC_ORDER.index(name) if name in _METRIC_ORDER else len(_METRIC_ORDER), name)

    return _dl({name: _num(metrics[name]) for name in sorted(metrics, key=rank)})


# Gate tags shown as one line of evidence instead of one row each.
_GATE_EVIDENCE = (
    "metric",
    "difference",
    "ci_low",
    "ci_high",
    "confidence",
    "n",
    "positives",
    "method",
    "task_type",
)
# What the gate's ``positives`` counts, by task type: regression has no classes to count.
_POSITIVES = {"binary": "{} positives", "multiclass": "rarest class {} rows"}


def _gate_evidence(gate: dict[str, Any]) -> str:
    """The gate's evidence as one line, e.g. ``roc_auc +0.005 [95% CI -0.002, +0.012], n=2000 (157
    positives)``; its tags are taken out of ``gate``. Empty for a version gated without it."""
    tags = {k: gate.pop(k, None) for k in _GATE_EVIDENCE}
    if tags["n"] is None:
        return ""
    number = {k: _parse_float(tags[k]) for k in ("difference", "ci_low", "ci_high", "confidence")}
    counted = _POSITIVES.get(tags["task_type"] or "binary")
    text = f"n={tags['n']}" + (f" ({counted.format(tags['positives'])})" if counted else "")
    if None not in number.values():
        text = (
            f"{tags['metric']} {number['difference']:+.3f} [{number['confidence']:.0%} CI "
            f"{number['ci_low']:+.3f}, {number['ci_high']:+.3f}], {text}"
        )
    return f'<br><span class="gate-evidence">{_e(text)}</span>'


def _parse_float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _rollout(rollout: dict[str, Any] | None) -> str:
    if rollout is None:
        return '<h3>Rollout</h3><p class="muted">No canary rollout yet.</p>'
    steps = rollout["steps"] or []
    at = f"step {rollout['step'] + 1} of {len(steps)}, " if rollout["step"] >= 0 and steps else ""
    title = (
        f'<h3>Rollout of v{_e(rollout["version"])}: <span class="rollout-status">{_e(rollout["status"])}'
        f"</span> ({_e(at)}weight {int(rollout['weight'])}%)</h3>"
    )
    reason = f'<p class="muted">{_e(rollout["reason"])}</p>' if rollout["reason"] else ""
    events = rollout["history"][-_HISTORY_SHOWN:]
    items = "".join(
        f"<li><strong>{_e(h.get('action'))}</strong> at {int(h.get('weight', 0))}%: {_e(h.get('message', ''))}</li>"
        for h in events
    )
    return (
        f"{title}{reason}{weight_svg(rollout['history'])}{metrics_svg(rollout['verdicts'])}<ol>{items}</ol>"
    )


def _drift(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return '<h3>Drift</h3><p class="muted">No drift check yet.</p>'
    verdict = (
        '<span class="drift">DRIFT</span>' if drift["dataset_drift"] else '<span class="pass">no drift</span>'
    )
    drifted = ", ".join(drift["drifted_features"]) or "none"
    share = _num(drift["drift_share"])
    threshold = (
        f" (threshold {_num(drift['drift_share_threshold'])})" if drift["drift_share_threshold"] else ""
    )
    psi = ", ".join(f"{_e(f)} {_num(v)}" for f, v in drift["top_psi"]) or "&ndash;"
    return (
        f'<h3>Drift</h3><p class="drift-summary">Latest check ({_e(drift["at"])}, against '
        f"v{_e(drift['model_version'])}): {verdict}; drift share {_e(share)}{_e(threshold)}; drifted "
        f"features: {_e(drifted)}. {_mlflow_link(drift['url'], 'report in MLflow')}</p>"
        f'<p class="muted">Highest PSI: {psi}. Data: {_e(drift["current_uri"] or "")} '
        f"({_e(drift['current_rows'] or '?')} rows).</p>"
    )


# -- SVG plots -----------------------------------------------------------------------------------------
_W, _LEFT, _RIGHT = 640, 48, 16


def weight_svg(history: list[dict[str, Any]]) -> str:
    """Canary traffic weight after each rollout event, as a step line with one dot per event."""
    if not history:
        return ""
    top, height, bottom = 16, 150, 26
    plot_h = height - top - bottom
    xs = _xs(len(history))

    def y(weight: float) -> float:
        return top + plot_h * (1 - weight / 100)

    points, dots, previous = [], [], None
    for x, event in zip(xs, history, strict=True):
        weight = float(event.get("weight", 0) or 0)
        if previous is not None:  # hold the previous weight until this event: a step line
            points.append(f"{x:.1f},{previous:.1f}")
        previous = y(weight)
        points.append(f"{x:.1f},{previous:.1f}")
        colour = _ACTION_COLOURS.get(str(event.get("action")), _EVENT_COLOUR)
        tip = f"{event.get('action')}: {weight:g}% {event.get('message', '')}"
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y(weight):.1f}" r="4" fill="{colour}"><title>{_e(tip)}</title></circle>'
        )
    grid = "".join(
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(w):.1f}" y2="{y(w):.1f}" stroke="#ddd"/>'
        f'<text x="{_LEFT - 6}" y="{y(w) + 4:.1f}" text-anchor="end">{w}%</text>'
        for w in (0, 50, 100)
    )
    return (
        f'<svg class="rollout-weight" role="img" aria-label="Canary traffic weight per rollout event" '
        f'width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" font-size="11" '
        f'xmlns="http://www.w3.org/2000/svg">{grid}'
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{_EVENT_COLOUR}" stroke-width="2"/>'
        f'{"".join(dots)}<text x="{_LEFT}" y="{height - 6}">canary weight per event (first to last; hover a '
        "dot for the decision)</text></svg>"
    )


def metrics_svg(verdicts: list[dict[str, Any]]) -> str:
    """One panel per checked metric: per analysed step, the canary's value (filled dots, solid line; red
    when the check failed) and the champion's (hollow dots, dashed line)."""
    series: dict[str, list[tuple[int, Any, Any, str]]] = {}
    for i, verdict in enumerate(verdicts):
        for check in verdict.get("checks", []):
            series.setdefault(check["metric"], []).append(
                (i, check.get("canary"), check.get("champion"), check.get("status", ""))
            )
    if not series:
        return ""
    labels = [f"{v['weight']}%" if v.get("weight") is not None else f"step {v['step'] + 1}" for v in verdicts]
    panel, top = 58, 22
    height = top + panel * len(series) + 18
    xs = _xs(len(verdicts))
    parts = [
        f'<circle cx="{_LEFT + 4}" cy="9" r="3.5" fill="{_CANARY}"/><text x="{_LEFT + 12}" y="13">canary</text>'
        f'<circle cx="{_LEFT + 66}" cy="9" r="3.5" fill="#fff" stroke="{_CHAMPION}"/>'
        f'<text x="{_LEFT + 74}" y="13">champion, per analysed step (canary weight below)</text>'
    ]
    for row, (metric, values) in enumerate(series.items()):
        y0 = top + row * panel
        box_top, box_bottom = y0 + 16, y0 + panel - 8
        finite = [v for _, c, h, _ in values for v in (c, h) if _finite(v)]
        low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)

        def y(
            value: float, low: float = low, high: float = high, top: int = box_top, bottom: int = box_bottom
        ) -> float:
            if high == low:
                return (top + bottom) / 2
            return bottom - 4 - (bottom - top - 8) * (value - low) / (high - low)

        parts.append(
            f'<text x="{_LEFT}" y="{y0 + 11}" font-weight="600">{_e(metric)}</text>'
            f'<rect x="{_LEFT}" y="{box_top}" width="{_W - _LEFT - _RIGHT}" height="{box_bottom - box_top}" '
            'fill="#fafafa" stroke="#e0e0e0"/>'
        )
        for value in {low, high} if finite else ():
            parts.append(
                f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_e(_num(value))}</text>'
            )
        for index, dash, colour in ((1, "", _CANARY), (2, ' stroke-dasharray="4 3"', _CHAMPION)):
            points = [f"{xs[v[0]]:.1f},{y(float(v[index])):.1f}" for v in values if _finite(v[index])]
            if len(points) > 1:
                parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}"{dash}/>')
        for i, canary, champion, status in values:
            tip = _e(f"{metric} at {labels[i]}: canary {_num(canary)}, champion {_num(champion)} ({status})")
            if _finite(champion):
                parts.append(
                    f'<circle cx="{xs[i]:.1f}" cy="{y(float(champion)):.1f}" r="3.5" fill="#fff" '
                    f'stroke="{_CHAMPION}"><title>{tip}</title></circle>'
                )
            if _finite(canary):
                colour = _ACTION_COLOURS["rollback"] if status == "fail" else _CANARY
                parts.append(
                    f'<circle cx="{xs[i]:.1f}" cy="{y(float(canary)):.1f}" r="3.5" fill="{colour}">'
                    f"<title>{tip}</title></circle>"
                )
    ticks = "".join(
        f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">{_e(label)}</text>'
        for x, label in zip(xs, labels, strict=True)
    )
    return (
        f'<svg class="rollout-metrics" role="img" aria-label="Analysis metrics per canary step: canary solid, '
        f'champion dashed" width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" font-size="11" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}{ticks}</svg>'
    )


# -- helpers -------------------------------------------------------------------------------------------
def _xs(count: int) -> list[float]:
    left, right = _LEFT + 12, _W - _RIGHT - 12
    if count == 1:
        return [(left + right) / 2]
    return [left + (right - left) * i / (count - 1) for i in range(count)]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any) -> str:
    if _finite(value):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _link(href: str, text: str, *, nav: str) -> str:
    return f'<a href="{_e(href)}" data-nav="{nav}">{_e(text)}</a>'


def _mlflow_link(url: str | None, text: str) -> str:
    """A link to the MLflow UI; the URL comes from the connection and is http(s) (see MLflowHook.ui_base_url)."""
    if not url:
        return ""
    return f'<a href="{_e(url)}" target="_blank" rel="noopener" data-nav="mlflow">{_e(text)}</a>'


def _dl(values: dict[str, Any], trusted: set[str] | frozenset[str] = frozenset()) -> str:
    """A definition list; values are escaped except the keys in ``trusted`` (HTML built here)."""
    if not values:
        return ""
    rows = "".join(
        f"<dt>{_e(k)}</dt><dd>{v if k in trusted else f'<code>{_e(v)}</code>'}</dd>"
        for k, v in values.items()
    )
    return f"<dl>{rows}</dl>"
