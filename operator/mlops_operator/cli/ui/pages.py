"""The four views as pure functions: listings of custom objects (plain dicts) in, an HTML page out.

Missing status renders as "pending" (a just-created object has none); a list the API server
refused renders as a notice in its place, and nothing else of that kind is shown.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ..compare import compare
from ..lineage import assemble
from ..tables import KEY_METRICS, condition, fmt_value, lower_is_better, parse_time, short_digest, version_sort_key
from . import charts
from .layout import Listing, page, problem
from .markup import Markup, badge, cell, esc, join, link, message, status_badge, table, tag, when

#: at most this many runs compared at once by default (the newest)
DEFAULT_COMPARE = 4
#: DriftMonitor status.accuracyTrend length (controllers/driftmonitor.py TREND)
TREND_WINDOWS = 20


def _meta(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def _name(o: dict[str, Any]) -> str:
    return str(_meta(o).get("name") or "")


def _spec(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("spec") or {}


def _status(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("status") or {}


def _created(o: dict[str, Any]) -> tuple[str, str]:
    return str(_meta(o).get("creationTimestamp") or ""), _name(o)


def _epoch(ts: str | None) -> float | None:
    t = parse_time(ts)
    return t.timestamp() if t else None


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%m-%d %H:%M:%S")


def _ready(o: dict[str, Any]) -> Markup:
    """The Ready condition in words; no status at all: pending."""
    c = condition(o)
    if not _status(o) or not c or c.get("status") == "Unknown":
        return status_badge(None)
    return badge("Ready", "ok") if c.get("status") == "True" else badge("not ready", "bad")


# ------------------------------------------------------------------------------------ overview

def overview_page(ns: str, listings: list[Listing], *, context: str | None = None, user: str | None = None) -> str:
    """Counts per kind, with links: the landing page."""
    where = {"TrainingRun": "/runs", "ModelVersion": "/versions", "InferenceService": "/monitoring",
             "DriftMonitor": "/monitoring", "Dataset": "/datasets"}
    rows: list[list[Any]] = []
    notes: list[Markup] = []
    for li in listings:
        if li.ok:
            rows.append([link(f"{li.kind}s", where.get(li.kind, "/"), ns=ns), cell(len(li.items), "num")])
        else:
            rows.append([f"{li.kind}s", badge("no permission" if li.forbidden else "error", "bad")])
            notes.append(problem(li, ns, user))
    body = join([*notes, table(["kind", "objects"], rows)])
    return page("Overview", ns, "", body, context=context, user=user)


# ------------------------------------------------------------------------------------ runs

def _trial_label(t: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted((t.get("params") or {}).items()))
    return f"#{t.get('number', '?')} {params}"


def _trials(run: dict[str, Any]) -> Markup:
    st = _status(run)
    trials = st.get("trials") or []
    if not st:
        return tag("p", Markup(f"{esc(_name(run))}: " + status_badge(None) + " no trials yet"))
    if not trials:
        return tag("p", f"{_name(run)}: no trials recorded", {"class": "empty"})
    scored = [t for t in trials if isinstance(t.get("score"), (int, float))]
    best = max((t["score"] for t in scored), default=None)
    values = [float(t["score"]) for t in scored]
    pad = max((max(values) - min(values)) * 0.5, 0.01) if values else 0.0
    chart = charts.bar_chart(
        f"{_name(run)}: cross-validated {st.get('metric') or 'score'} per trial (best in red)",
        [(_trial_label(t), float(t["score"]), t["score"] == best) for t in scored],
        value_range=(min(values) - pad, max(values) + pad) if values else None)
    rows = [[cell(t.get("number"), "num"),
             badge(t.get("state", "complete"), {"complete": "ok", "failed": "bad"}.get(t.get("state", "complete"), "")),
             cell(fmt_value(t.get("score")), "num best" if t.get("score") == best else "num"),
             cell(fmt_value(t.get("std")), "num"), cell(fmt_value(t.get("seconds")), "num"),
             ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted((t.get("params") or {}).items())) or "-"]
            for t in trials]
    return join([tag("h3", f"Trials of {_name(run)}"), chart,
                 table(["#", "state", "score", "std", "seconds", "params"], rows)])


def _comparison(chosen: list[dict[str, Any]]) -> Markup:
    c = compare([{**r, "kind": "TrainingRun"} for r in chosen])
    items = c["items"]
    headers: list[Any] = ["", *[link(it["name"], "/runs", run=it["name"], ns=_meta(chosen[0]).get("namespace"))
                                for it in items]]
    rows: list[list[Any]] = [["phase", *[status_badge(_status(r).get("phase")) for r in chosen]]]
    labels = {"model": "model", "estimator": "estimator", "dataset": "dataset", "datasetDigest": "dataset digest"}
    for k, label in labels.items():
        f = c["fields"][k]
        vals = [short_digest(v) if k == "datasetDigest" and v else v for v in f["values"]]
        rows.append([label, *[cell(v, "differs" if f["differs"] else None) for v in vals]])
    rows.append(["model version", *[it.get("modelVersion") for it in items]])
    promos = [_status(r).get("promotion") or {} for r in chosen]
    if any(promos):
        rows.append(["promotion", *[f"{p.get('decision')}: {p.get('reason') or ''}" if p else "-" for p in promos]])
    if any(_status(r).get("message") for r in chosen):
        rows.append(["message", *[_status(r).get("message") or "-" for r in chosen]])
    rows.append([tag("b", "params"), *[""] * len(items)])
    for k, p in c["params"].items():
        rows.append([k, *[cell(fmt_value(v), "differs" if p["differs"] else None) for v in p["values"]]])
    rows.append([tag("b", "metrics (test split)"), *[""] * len(items)])
    for k, m in c["metrics"].items():
        rows.append([f"{k} ({'lower' if m['lowerIsBetter'] else 'higher'} is better)",
                     *[cell(fmt_value(v), "num best" if i in m["best"] else "num") for i, v in enumerate(m["values"])]])
    out = [table(headers, rows, "compare"),
           tag("p", "Shaded: differs between the runs; bold: best value of the metric.", {"class": "muted"})]
    shared = [m for m in KEY_METRICS if m in c["metrics"]] or list(c["metrics"])
    if shared:
        m = shared[0]
        vals = c["metrics"][m]["values"]
        out.append(charts.bar_chart(f"{m} by run ({'lower' if lower_is_better(m) else 'higher'} is better)",
                                    [(it["name"], float(v), i in c["metrics"][m]["best"])
                                     for i, (it, v) in enumerate(zip(items, vals)) if isinstance(v, (int, float))]))
    return join(out)


def runs_page(ns: str, runs: Listing, selected: list[str], *, context: str | None = None,
              user: str | None = None) -> str:
    """All TrainingRuns, a form to pick some, and the picked ones side by side with their trials."""
    if not runs.ok:
        return page("TrainingRuns", ns, "runs", problem(runs, ns, user), context=context, user=user)
    ordered = sorted(runs.items, key=_created)
    chosen = [r for r in ordered if _name(r) in selected] if selected else ordered[-DEFAULT_COMPARE:]
    picked = {_name(r) for r in chosen}
    rows = []
    for r in ordered:
        spec, st = _spec(r), _status(r)
        metric = st.get("metric") or spec.get("metric")
        value = (st.get("metrics") or {}).get(metric) if metric else None
        ds = (spec.get("dataset") or {}).get("name")
        digest = st.get("datasetDigest") or (spec.get("dataset") or {}).get("digest")
        checked = " checked" if _name(r) in picked else ""
        box = Markup(f'<input type="checkbox" name="run" value="{esc(_name(r))}"{checked}>')
        mv = st.get("modelVersion")
        rows.append([box, _name(r), spec.get("modelName"), status_badge(st.get("phase")),
                     (spec.get("estimator") or {}).get("type"), f"{ds}@{short_digest(digest)}" if digest else ds,
                     cell(len(st.get("trials") or []), "num"),
                     f"{metric}={fmt_value(value)}" if metric and value is not None else (metric or "-"),
                     link(mv, "/versions", ns=ns, model=spec.get("modelName")) if mv else "-",
                     when(_meta(r).get("creationTimestamp"))])
    form = Markup(f'<form method="get" action="/runs"><input type="hidden" name="ns" value="{esc(ns)}">'
                  + table(["", "name", "model", "phase", "estimator", "dataset", "trials", "metric", "version",
                           "created"], rows, empty=f"No TrainingRuns in namespace {ns}.")
                  + ('<button type="submit">compare selected</button>' if rows else "") + "</form>")
    body: list[Any] = [tag("h2", "Runs"), form]
    if len(chosen) >= 1:
        body.append(tag("h2", f"Side by side ({len(chosen)} run{'s' if len(chosen) != 1 else ''})"))
        body.append(_comparison(chosen))
        body.append(tag("h2", "Trials"))
        body.extend(_trials(r) for r in chosen)
    return page("TrainingRuns", ns, "runs", join(body), context=context, user=user)


# ------------------------------------------------------------------------------------ versions

def _lineage_html(lin: dict[str, Any], ns: str) -> Markup:
    steps: list[Markup] = []
    ds = lin.get("dataset")
    if ds:
        bits = f"{ds.get('name') or '?'} @ {ds.get('versionId') or '-'}"
        extra = []
        if ds.get("rows") is not None:
            extra.append(f"{ds['rows']} rows")
        if ds.get("validated") is not None:
            extra.append("validated" if ds["validated"] else "NOT validated")
        if not ds.get("found"):
            extra.append("Dataset not found")
        steps.append(tag("span", Markup(link(bits, "/datasets", ns=ns) + " " + esc(", ".join(extra))),
                         {"class": "step"}))
    tr = lin.get("trainingRun")
    if tr:
        metric = f"{tr['metric']}={fmt_value(tr.get('metricValue'))}" if tr.get("metric") else ""
        steps.append(tag("span", Markup(link(tr.get("name"), "/runs", ns=ns, run=tr.get("name")) + " "
                                        + esc(" ".join(str(b) for b in (tr.get("estimator"), metric) if b))
                                        + (" " + status_badge(tr.get("phase")) if tr.get("found") else
                                           esc(" (run deleted)"))), {"class": "step"}))
    mv = lin["modelVersion"]
    steps.append(tag("span", Markup(tag("b", mv.get("name")) + esc(f" digest {short_digest(mv.get('digest'))}")),
                     {"class": "step"}))
    for s in lin.get("inferenceServices") or []:
        steps.append(tag("span", Markup(link(s.get("name"), "/monitoring", ns=ns)
                                        + esc(" serving it" if s.get("role") == "serving" else " served it before")),
                         {"class": "step"}))
    return tag("div", join(steps, " → "), {"class": "lineage"})


def alias_chart(history: list[tuple[str, dict[str, Any], str]], now: float) -> Markup:
    """Who held which alias when: one lane per version, a bar from each assignment to its removal (or now)."""
    lanes: dict[str, list[tuple[float, float, str]]] = {}
    open_at: dict[tuple[str, str], float] = {}
    for ts, ev, version in sorted(history, key=lambda h: h[0]):
        t = _epoch(ts)
        if t is None:
            continue
        key = (version, str(ev.get("alias")))
        if ev.get("action") == "assigned":
            open_at.setdefault(key, t)
        elif key in open_at:
            lanes.setdefault(version, []).append((open_at.pop(key), t, key[1]))
    for (version, alias), start in open_at.items():
        lanes.setdefault(version, []).append((start, max(now, start), alias))
    return charts.spans("aliases over time", sorted(lanes.items()), time_label=_clock) if lanes else Markup("")


def versions_page(ns: str, mvs: Listing, runs: Listing, datasets: Listing, services: Listing,
                  model: str | None = None, *, now: float | None = None, context: str | None = None,
                  user: str | None = None) -> str:
    """Per model: the versions, their lineage (Dataset → TrainingRun → ModelVersion → services) and the
    alias history of all its versions on one list, oldest first."""
    if not mvs.ok:
        return page("Model versions", ns, "versions", problem(mvs, ns, user), context=context, user=user)
    now = time.time() if now is None else now
    notes = [problem(li, ns, user) for li in (runs, datasets, services) if not li.ok]
    by_run = {_name(r): r for r in runs.items}
    by_ds = {_name(d): d for d in datasets.items}
    models: dict[str, list[dict[str, Any]]] = {}
    for mv in sorted(mvs.items, key=version_sort_key):
        m = _spec(mv).get("model") or (_meta(mv).get("labels") or {}).get("mlops.dev/model") or "?"
        if model and m != model:
            continue
        models.setdefault(m, []).append(mv)
    body: list[Any] = list(notes)
    if not models:
        body.append(tag("p", f"No ModelVersions{' of model ' + model if model else ''} in namespace {ns}.",
                        {"class": "empty"}))
    for m, versions in models.items():
        rows = []
        history = []
        lineages = []
        for mv in versions:
            spec, st = _spec(mv), _status(mv)
            lin = spec.get("lineage") or {}
            metrics = spec.get("metrics") or {}
            shown = " ".join(f"{k}={fmt_value(metrics[k])}" for k in [k for k in KEY_METRICS if k in metrics][:3])
            rows.append([cell(spec.get("version"), "num"), _name(mv),
                         join(badge(a, "ok") for a in spec.get("aliases") or []) or "-",
                         status_badge(st.get("stage")), _ready(mv), shown or "-", lin.get("trainingRun"),
                         f"{lin.get('dataset')}@{short_digest(lin.get('datasetDigest'))}" if lin.get("dataset")
                         else "-", when(_meta(mv).get("creationTimestamp"))])
            for ev in st.get("aliasHistory") or []:
                history.append((str(ev.get("time") or ""), ev, _name(mv)))
            run = by_run.get(lin.get("trainingRun") or "")
            ds_name = lin.get("dataset") or ((_spec(run).get("dataset") or {}).get("name") if run else None)
            lineages.append(_lineage_html(assemble(mv, run, by_ds.get(ds_name or ""), services.items), ns))
        hist_rows = [[when(t), ev.get("alias"), badge(ev.get("action"), "ok" if ev.get("action") == "assigned" else ""),
                      name, ev.get("by"), ev.get("reason") or "-"]
                     for t, ev, name in sorted(history, key=lambda h: h[0])]
        body.append(tag("section", join([
            tag("h2", f"Model {m}"),
            alias_chart(history, now),
            table(["version", "name", "aliases", "stage", "ready", "metrics", "run", "dataset", "created"], rows),
            tag("h3", "Lineage"), join(lineages),
            tag("h3", "Alias history"),
            table(["time", "alias", "action", "version", "by", "reason"], hist_rows, empty="no alias moved yet"),
        ]), {"class": "card", "data-model": m}))
    return page("Model versions", ns, "versions", join(body), context=context, user=user)


# ------------------------------------------------------------------------------------ monitoring

MISSING_SERIES = ("this DriftMonitor's status has no history (an operator older than status.history): "
                  "status.driftShare holds the last evaluated window only, so it is shown as the current value "
                  "against its threshold; status.accuracyTrend keeps the last windows' accuracy without their "
                  "times, so it is plotted per window, and retrainings, promotions and rollouts are on the time "
                  "line below it.")


def _history_chart(history: list[dict[str, Any]], events: list[charts.Event], acc_policy: dict[str, Any],
                   share_threshold: float) -> Markup:
    """status.history on one time axis: each window's drift share and accuracy metric, their
    thresholds, and the retrainings, promotions and rollouts since the oldest window as marks
    down the chart (the demo's plot, from status alone)."""
    metric = str(acc_policy.get("metric") or "accuracy")

    def points(key: str) -> list[tuple[float, float]]:
        out = []
        for h in history:
            t, v = _epoch(h.get("time")), h.get(key)
            if t is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((t, float(v)))
        return out

    share, acc = points("driftShare"), points("accuracy")
    first = min(t for t, _ in share + acc) if share + acc else 0.0
    rules = [charts.Rule(f"drift share threshold {fmt_value(share_threshold)}", share_threshold,
                         color=charts.COLORS[1])]
    if acc_policy.get("threshold") is not None:
        rules.append(charts.Rule(f"{metric} threshold {fmt_value(acc_policy['threshold'])}",
                                 float(acc_policy["threshold"]), color=charts.COLORS[0]))
    rules += [charts.Rule(e.label, e.time, axis="x", color=charts.EVENT_COLORS.get(e.kind, "#555"))
              for e in events if e.kind != "evaluation" and e.time >= first]
    return charts.line_chart(
        f"drift share and {metric} per window (last {len(history)} windows)",
        [charts.Series(metric, acc, charts.COLORS[0]), charts.Series("drift share", share, charts.COLORS[1])],
        rules=rules, y_range=(0.0, 1.0), x_label=_clock, x_title="window evaluated (UTC)")


def _monitor(dm: dict[str, Any], isvc: dict[str, Any] | None, runs: list[dict[str, Any]],
             mvs: list[dict[str, Any]], ns: str) -> Markup:
    spec, st = _spec(dm), _status(dm)
    name = _name(dm)
    head = tag("h3", Markup(esc(f"DriftMonitor {name} ") + (status_badge(None) if not st else
                                                               _ready(dm))))
    if not st:
        return join([head, message("info", "pending: the operator has not evaluated a window yet.")])
    drifted = condition(dm, "Drifted")
    acc_policy = spec.get("accuracy") or {}
    share_threshold = spec.get("driftShare", 0.5)
    facts: list[list[Any]] = [
        ["last evaluation", when(st.get("lastEvaluationTime"))],
        ["rows in the window", st.get("samples")],
        ["drift share", f"{fmt_value(st.get('driftShare'))} (drift at ≥ {fmt_value(share_threshold)})"],
        ["dataset drift", badge("drifted", "bad") if st.get("datasetDrift") else
         (badge("no drift", "ok") if st.get("datasetDrift") is False else "-")],
        ["accuracy" if not acc_policy else acc_policy.get("metric", "accuracy"),
         f"{fmt_value(st.get('accuracy'))}" + (f" (degraded below {fmt_value(acc_policy.get('threshold'))})"
                                                if acc_policy.get("threshold") is not None else "")],
        ["labelled rows", st.get("labelledSamples")],
        ["Drifted", Markup({"True": badge("drifted", "bad"), "False": badge("not drifted", "ok")}.get(
            drifted.get("status") or "", badge("unknown", "pending")) + esc(" " + (drifted.get("message") or "")))
         if drifted else "-"],
        ["retrainings", st.get("retrainCount") or 0],
        ["last retraining", Markup(when(st.get("lastRetrainTime"))
                                   + esc(f" ({st.get('lastTrainingRun') or 'no run'})"))],
        ["retraining now", ((st.get("retrain") or {}).get("phase") or "-")],
        ["message", st.get("message")],
    ]
    events = []
    own_runs = [r for r in runs if (_meta(r).get("labels") or {}).get("mlops.dev/drift-monitor") == name]
    for r in own_runs:
        t = _epoch(_meta(r).get("creationTimestamp") or _status(r).get("startTime"))
        if t is not None:
            events.append(charts.Event(t, f"retrain {_name(r)}", "retrain"))
    t = _epoch(st.get("lastRetrainTime"))
    if not own_runs and t is not None:  # the run was deleted (or cannot be listed): the time is in status
        events.append(charts.Event(t, f"retraining #{st.get('retrainCount') or '?'}", "retrain"))
    alias = _spec(isvc).get("alias") if isvc else None
    model = _spec(isvc).get("model") if isvc else None
    for mv in mvs:
        if model and _spec(mv).get("model") != model:
            continue
        for ev in _status(mv).get("aliasHistory") or []:
            t = _epoch(ev.get("time"))
            if t is not None and ev.get("action") == "assigned" and (alias is None or ev.get("alias") == alias):
                events.append(charts.Event(t, f"{ev.get('alias')} → {_name(mv)}", "promotion"))
    if isvc is not None:
        t = _epoch(_status(isvc).get("lastRolloutTime"))
        if t is not None:
            events.append(charts.Event(t, f"rolled out {_status(isvc).get('modelVersion') or ''}", "rollout"))
    t = _epoch(st.get("lastEvaluationTime"))
    if t is not None:
        events.append(charts.Event(t, "last evaluation", "evaluation"))
    line = charts.timeline("retrainings (red), promotions (green), rollouts (blue)", events, time_label=_clock)
    history = [h for h in st.get("history") or [] if isinstance(h, dict) and _epoch(h.get("time")) is not None]
    if history:
        over_time = _history_chart(history, events, acc_policy, float(share_threshold))
        shown = [over_time, line]
    else:  # an operator from before status.history: what status holds, and what it does not
        trend = [float(v) for v in st.get("accuracyTrend") or [] if isinstance(v, (int, float))]
        n = len(trend)
        rules = [charts.Rule(f"threshold {fmt_value(acc_policy['threshold'])}", float(acc_policy["threshold"]),
                             color="#d62728")] if acc_policy.get("threshold") is not None else []
        acc_chart = charts.line_chart(
            f"{acc_policy.get('metric', 'accuracy')} per window (last {n}, newest right)",
            [charts.Series("accuracy", [(float(i - n + 1), v) for i, v in enumerate(trend)])],
            rules=rules, x_label=lambda x: f"{int(x)}" if x else "now", x_title="window (0 = last evaluated)")
        share = st.get("driftShare")
        share_chart = charts.bar_chart(
            "drift share of the last window", [("drift share", float(share), bool(st.get("datasetDrift")))]
            if isinstance(share, (int, float)) else [],
            rule=charts.Rule(f"threshold {fmt_value(share_threshold)}", float(share_threshold), color="#d62728"),
            value_range=(0.0, 1.0), width=420)
        shown = [acc_chart, share_chart, line, message("info", "Not in status: " + MISSING_SERIES)]
    feats = [[f.get("name"), f.get("method"), cell(fmt_value(f.get("score")), "num"),
              cell(fmt_value(f.get("threshold")), "num"),
              badge("drifted", "bad") if f.get("drifted") else badge("ok", "ok")] for f in st.get("features") or []]
    run_rows = [[link(_name(r), "/runs", ns=ns, run=_name(r)), when(_meta(r).get("creationTimestamp")),
                 status_badge(_status(r).get("phase")), (_meta(r).get("annotations") or {}).get(
                     "mlops.dev/retrain-reason") or "-", _status(r).get("modelVersion"),
                 ((_status(r).get("promotion") or {}).get("decision") or "-")]
                for r in sorted(own_runs, key=_created)]
    return join([head, table([], facts, "facts"), *shown,
                 tag("h3", "Retraining runs"),
                 table(["run", "created", "phase", "reason", "version", "promotion"], run_rows,
                       empty="no retraining yet"),
                 tag("h3", "Per-feature drift (last window)"),
                 table(["feature", "method", "score", "threshold", ""], feats, empty="no feature scores yet")])


def monitoring_page(ns: str, services: Listing, monitors: Listing, runs: Listing, mvs: Listing, *,
                    context: str | None = None, user: str | None = None) -> str:
    """Per InferenceService: what it serves, and each DriftMonitor on it with drift, accuracy and retrainings."""
    notes = [problem(li, ns, user) for li in (services, monitors, runs, mvs) if not li.ok]
    if not services.ok and not monitors.ok:
        return page("Drift & accuracy", ns, "monitoring", join(notes), context=context, user=user)
    body: list[Any] = list(notes)
    by_isvc: dict[str, list[dict[str, Any]]] = {}
    for dm in sorted(monitors.items, key=_name):
        by_isvc.setdefault(_spec(dm).get("inferenceService") or "", []).append(dm)
    names = {_name(s) for s in services.items}
    if not services.items and services.ok:
        body.append(tag("p", f"No InferenceServices in namespace {ns}.", {"class": "empty"}))
    for isvc in sorted(services.items, key=_name):
        spec, st = _spec(isvc), _status(isvc)
        follows = f"alias {spec.get('alias')}" if spec.get("alias") else f"pinned v{spec.get('version')}"
        info = (f"model {spec.get('model')} ({follows}); serving {st.get('modelVersion') or '-'}"
                f"{', before: ' + st['previousModelVersion'] if st.get('previousModelVersion') else ''}; "
                f"replicas {st.get('readyReplicas', 0)}/{st.get('replicas', spec.get('replicas', 1))} ready")
        parts: list[Any] = [tag("h2", Markup(esc(f"InferenceService {_name(isvc)} ") + _ready(isvc))),
                            tag("p", info if st else "pending: no status yet")]
        dms = by_isvc.get(_name(isvc), [])
        if not dms:
            parts.append(tag("p", "No DriftMonitor watches it.", {"class": "empty"}))
        parts.extend(_monitor(dm, isvc, runs.items, mvs.items, ns) for dm in dms)
        body.append(tag("section", join(parts), {"class": "card", "data-service": _name(isvc)}))
    orphans = [dm for key, dms in by_isvc.items() if key not in names for dm in dms]
    if orphans and services.ok:
        body.append(tag("section", join([tag("h2", "DriftMonitors of a missing InferenceService"),
                                         *[_monitor(dm, None, runs.items, mvs.items, ns) for dm in orphans]]),
                        {"class": "card"}))
    return page("Drift & accuracy", ns, "monitoring", join(body), context=context, user=user)


# ------------------------------------------------------------------------------------ datasets

def _dataset(ds: dict[str, Any]) -> Markup:
    spec, st = _spec(ds), _status(ds)
    src = spec.get("source") or {}
    source = src.get("type") or next(iter(src.keys()), "?")
    head = tag("h2", Markup(esc(f"Dataset {_name(ds)} ") + status_badge(st.get("phase"))))
    if not st:
        return tag("section", join([head, tag("p", f"source: {source}"),
                                    message("info", "pending: no snapshot yet.")]), {"class": "card",
                                                                                     "data-dataset": _name(ds)})
    latest_valid = (st.get("latestValid") or {}).get("id")
    rows = [[v.get("id"), tag("code", short_digest(v.get("digest"), 16), {"title": v.get("uri") or v.get("digest")}),
             cell(v.get("rows"), "num"), cell(v.get("columns"), "num"), when(v.get("createdAt")),
             badge("valid", "ok") if v.get("validated") else badge("invalid", "bad"),
             cell(v.get("failedChecks") or 0, "num"),
             badge("training uses it", "ok") if v.get("id") == latest_valid else ""]
            for v in st.get("versions") or []]
    snapshot = Markup(esc(f"source: {source}; last snapshot ") + when(st.get("lastSnapshotTime"))
                      + esc(f" ({st.get('lastSnapshotTrigger') or '-'})"))
    parts: list[Any] = [head, tag("p", snapshot),
                        tag("h3", "Versions (newest first)"),
                        table(["id", "digest", "rows", "columns", "created", "validation", "failed checks", ""],
                              rows, empty="no versions yet")]
    report = st.get("validation")
    parts.append(tag("h3", "Validation report of the latest snapshot"))
    if not report:
        parts.append(tag("p", "pending: no report yet", {"class": "empty"}))
    else:
        verdict = badge("passed", "ok") if report.get("passed") else badge("failed", "bad")
        parts.append(tag("p", Markup(verdict + esc(f" version {short_digest(report.get('digest'))}"))))
        fails = [[f.get("check"), f.get("column"), cell(f.get("count"), "num"),
                  ", ".join(str(e) for e in f.get("examples") or []) or "-", f.get("message")]
                 for f in report.get("failures") or []]
        parts.append(table(["check", "column", "rows", "examples", "message"], fails, empty="every check passed"))
    parts.append(tag("p", "Older versions keep only their failed-check count in status; the full report of each "
                          "is in the artifact store next to the snapshot.", {"class": "muted"}))
    prof = st.get("profile")
    if prof:
        dist = prof.get("labelDistribution") or {}
        parts.append(tag("h3", f"Profile of the latest valid version: {prof.get('rows')} rows, "
                               f"{prof.get('columns')} columns"))
        if dist:
            parts.append(charts.bar_chart("rows per label value", [(k, float(v), False) for k, v in dist.items()],
                                          width=420))
        nulls = prof.get("nullCounts") or {}
        if nulls:
            parts.append(table(["column", "missing values"], [[k, cell(v, "num")] for k, v in sorted(nulls.items())]))
    return tag("section", join(parts), {"class": "card", "data-dataset": _name(ds)})


def datasets_page(ns: str, datasets: Listing, *, context: str | None = None, user: str | None = None) -> str:
    """Each Dataset's versions (valid or not) and the validation report of its latest snapshot."""
    if not datasets.ok:
        return page("Datasets", ns, "datasets", problem(datasets, ns, user), context=context, user=user)
    body = [_dataset(d) for d in sorted(datasets.items, key=_name)] or [
        tag("p", f"No Datasets in namespace {ns}.", {"class": "empty"})]
    return page("Datasets", ns, "datasets", join(body), context=context, user=user)
