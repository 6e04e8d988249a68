"""Escaping by default: every value is escaped unless it is already `Markup` built here.

Object names, labels, messages and parameters are user input (anyone who can create a
TrainingRun writes them), so the page never interpolates a raw string into HTML.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from ..tables import NONE, fmt_value


class Markup(str):
    """A string that is already safe HTML (built by this module's functions)."""


def esc(value: Any) -> Markup:
    """`value` as text in HTML (quotes too: safe in attributes); Markup passes through."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup(NONE)
    if isinstance(value, (bool, float)):
        return Markup(html.escape(fmt_value(value), quote=True))
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(esc(sep).join(esc(p) for p in parts))


def tag(name: str, content: Any = "", attrs: Mapping[str, Any] | None = None) -> Markup:
    """<name attrs>content</name>; attribute values and content are escaped (content unless Markup)."""
    a = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items() if v is not None and v is not False)
    return Markup(f"<{name}{a}>{esc(content)}</{name}>")


def href(path: str, **params: Any) -> str:
    """A local link with its query string (lists repeat the key); escaped when put in an attribute."""
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if v is None:
            continue
        for one in v if isinstance(v, (list, tuple)) else [v]:
            items.append((k, str(one)))
    return path + ("?" + urlencode(items) if items else "")


def link(text: Any, path: str, **params: Any) -> Markup:
    return tag("a", text, {"href": href(path, **params)})


def table(headers: list[Any], rows: Iterable[list[Any]], cls: str | None = None, empty: str = "none") -> Markup:
    """Rows of cells (escaped unless Markup; `cell` keeps a class); no headers: no head row."""
    rows = list(rows)
    if not rows:
        return tag("p", empty, {"class": "empty"})
    head = tag("tr", join(tag("th", h) for h in headers)) if headers else ""
    body = join(tag("tr", join(c if isinstance(c, Markup) and c.startswith("<td") else tag("td", c) for c in r))
                for r in rows)
    return tag("table", Markup((f"<thead>{head}</thead>" if head else "") + f"<tbody>{body}</tbody>"),
               {"class": cls})


def when(ts: Any) -> Markup:
    """An RFC 3339 time, kept on one line."""
    if not ts:
        return esc(None)
    return tag("time", str(ts).replace("T", " "), {"datetime": str(ts)})


def cell(content: Any, cls: str | None = None, title: str | None = None) -> Markup:
    """A table cell with a class (e.g. differs, best): the table keeps it as is."""
    return tag("td", content, {"class": cls, "title": title})


def badge(text: Any, kind: str = "") -> Markup:
    return tag("span", text, {"class": f"badge {kind}".strip()})


def status_badge(phase: str | None) -> Markup:
    """Phase or condition status with a colour; no status at all is 'pending'."""
    if not phase:
        return badge("pending", "pending")
    kind = {"Succeeded": "ok", "Ready": "ok", "True": "ok", "aliased": "ok", "Failed": "bad", "False": "bad",
            "Running": "busy", "Snapshotting": "busy", "Pending": "pending", "Unknown": "pending"}.get(phase, "")
    return badge(phase, kind)


def message(kind: str, text: Any) -> Markup:
    """A notice box: kind is info, warn or error (the no-permission message is an error)."""
    return tag("div", text, {"class": f"notice {kind}", "role": "alert" if kind == "error" else "note"})
