"""The PromQL of the Grafana dashboard (manifests/monitoring/mlops-dashboard.json) as Prometheus
runs it: Grafana's variables expanded, so every panel's and variable's query can be sent to a real
Prometheus and checked for data (tests/e2e: each returns a series during the retail loop).

Pure: the dashboard's JSON in, (where, PromQL) pairs out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .promconfig import parse_duration

#: `label_values(<selector>, <label>)`: Grafana's variable query; Prometheus runs the selector
LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard: where it is (panel title and refId, or variable),
    the expression as written, and as Prometheus gets it."""

    where: str
    expr: str
    promql: str
    label: str | None = None  # a variable's query: the label whose values it lists


def rate_interval(scrape_interval: str) -> str:
    """Grafana's `$__rate_interval` for a panel whose `$__interval` is at most the scrape
    interval: four scrape intervals (Grafana: max($__interval + scrape, 4 x scrape))."""
    return f"{int(4 * parse_duration(scrape_interval))}s"


def expand(expr: str, values: dict[str, str]) -> str:
    """`expr` with Grafana's variables (`$name`, `${name}`, `${name:format}`) replaced by
    `values`; a variable without a value is an error, not a silent empty matcher."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return values[name]
    return VARIABLE.sub(sub, expr)


def queries(dashboard: dict[str, Any], values: dict[str, str]) -> list[Query]:
    """Every panel target's expression and every query variable's selector, expanded with
    `values` (the dashboard's variables plus Grafana's own, e.g. `__rate_interval`)."""
    out = []
    for panel in dashboard.get("panels") or []:
        for t in panel.get("targets") or []:
            if t.get("expr"):
                out.append(Query(f"panel {panel.get('title')!r} {t.get('refId', '')}".rstrip(), t["expr"],
                                 expand(t["expr"], values)))
    for v in (dashboard.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query") or ""
        m = LABEL_VALUES.fullmatch(q.strip())
        if m is None:
            raise ValueError(f"variable {v.get('name')}: not a label_values(selector, label) query: {q!r}")
        out.append(Query(f"variable {v.get('name')}", q, expand(m.group(1), values), m.group(2)))
    return out
