"""The page frame shared by every view: header, namespace picker, navigation, style.

No script anywhere, and the server's Content-Security-Policy forbids scripts, so even a string
that escaped escaping could not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .markup import Markup, esc, href, join, message, tag

NAV = (("runs", "/runs", "TrainingRuns"), ("versions", "/versions", "Model versions"),
       ("monitoring", "/monitoring", "Drift & accuracy"), ("datasets", "/datasets", "Datasets"))

KIND_PLURAL = {"Dataset": "datasets", "TrainingRun": "trainingruns", "ModelVersion": "modelversions",
               "InferenceService": "inferenceservices", "DriftMonitor": "driftmonitors"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header a{color:#cfe3ff;text-decoration:none}header a.active{color:#fff;font-weight:600;border-bottom:2px solid #fff}
header .brand{font-weight:700}header form{margin-left:auto}header input{width:12em}
main{padding:12px 18px;max-width:1400px}
h1{font-size:20px;margin:8px 0}h2{font-size:17px;margin:18px 0 6px}h3{font-size:15px;margin:12px 0 4px}
table{border-collapse:collapse;background:#fff;margin:4px 0 10px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.differs{background:#fff6d6}td.best{font-weight:700;color:#0a6b22}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 6px;border-radius:8px;background:#e3e7ec;font-size:12px}
.badge.ok{background:#d6f5dd;color:#0a5a1c}.badge.bad{background:#fbd9d9;color:#8a1010}
.badge.busy{background:#dce9fb;color:#123f7a}.badge.pending{background:#eee;color:#666}
.notice{padding:8px 12px;margin:8px 0;border-radius:4px;border:1px solid}
.notice.error{background:#fdecea;border-color:#e0a0a0}.notice.warn{background:#fff8e1;border-color:#e6d18a}
.notice.info{background:#eef5fc;border-color:#b9d3ee}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 14px;margin:10px 0}
time{white-space:nowrap}.muted{color:#666}.empty{color:#666;font-style:italic}code{font-size:12px}
svg.chart{background:#fff;border:1px solid #e3e3e3;margin:4px 8px 4px 0}
svg .axis{stroke:#999}svg .tick{font-size:10px;fill:#555}svg .chart-title{font-size:12px;font-weight:600}
svg .rule{stroke-dasharray:4 3}svg .mark{stroke-dasharray:2 2;stroke-width:1.5}
svg .rule-label{font-size:10px;fill:#555}svg .legend{font-size:11px}svg .chart-empty{fill:#888;font-style:italic}
.lineage{margin:4px 0}
.lineage .step{display:inline-block;background:#f4f7fa;border:1px solid #dde3ea;border-radius:4px;
  padding:1px 6px;margin:2px 0}
svg .bar{fill:#9dbbe0}svg .bar.hi{fill:#d9534f}
"""


@dataclass(frozen=True)
class Listing:
    """Objects of one kind as the API server returned them, or why it did not."""

    kind: str
    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    forbidden: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def problem(listing: Listing, namespace: str, user: str | None = None) -> Markup:
    """Why a list is missing: 'no permission' for a 403 (the page shows nothing else of that kind)."""
    if listing.error is None:
        return Markup("")
    plural = KIND_PLURAL.get(listing.kind, listing.kind.lower() + "s")
    if listing.forbidden:
        who = f"{user} has" if user else "you have"
        return message("error", f"No permission: {who} no right to list {plural} in namespace {namespace} "
                                f"({listing.error}). Nothing of this namespace is shown; ask an admin for a Role "
                                f"that can get and list {plural}.mlops.dev, or choose another namespace.")
    return message("error", f"Could not read {plural} in namespace {namespace}: {listing.error}")


def page(title: str, namespace: str, active: str, body: Any, *, context: str | None = None,
         user: str | None = None) -> str:
    nav = join(tag("a", label, {"href": href(path, ns=namespace), "class": "active" if key == active else None})
               for key, path, label in NAV)
    picker = Markup(
        f'<form method="get" action="{esc(href(next((p for k, p, _ in NAV if k == active), "/runs")))}">'
        f'<label>namespace <input name="ns" value="{esc(namespace)}" pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" '
        f'maxlength="63"></label> <button type="submit">show</button></form>')
    who = tag("span", f"{user or ''}{' @ ' + context if context else ''}", {"class": "muted"})
    return ("<!doctype html>\n" + tag("html", Markup(
        tag("head", Markup('<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
                           + tag("title", f"{title} · {namespace} · mlops") + tag("style", Markup(STYLE))))
        + tag("body", Markup(
            tag("header", Markup(tag("span", "mlops", {"class": "brand"}) + nav + who + picker))
            + tag("main", Markup(tag("h1", Markup(esc(title) + " " + tag("span", f"in namespace {namespace}",
                                                                            {"class": "muted"})))
                                 + esc(body)))))),
        {"lang": "en"}))


def error_page(status: int, text: str, namespace: str = "") -> str:
    return page(f"Error {status}", namespace or "-", "", message("error", text))
