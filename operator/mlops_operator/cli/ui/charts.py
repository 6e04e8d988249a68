"""Inline SVG charts: no JavaScript, no build step, nothing fetched; they print and screenshot as is.

Each chart is a pure function of numbers and labels; every label is escaped. Non-finite values
are left out (a NaN would make the whole path invalid).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..tables import fmt_value
from .markup import Markup, esc

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]
    color: str = COLORS[0]


@dataclass(frozen=True)
class Rule:
    """A horizontal (axis "y": a threshold) or vertical (axis "x": an event such as a retraining) line."""

    label: str
    value: float
    axis: str = "y"
    color: str = "#888"


@dataclass(frozen=True)
class Frame:
    width: int = 640
    height: int = 220
    left: int = 48
    right: int = 16
    top: int = 26
    bottom: int = 34
    extra: dict[str, str] = field(default_factory=dict)

    def sx(self, x: float, lo: float, hi: float) -> float:
        return self.left + (x - lo) / (hi - lo or 1.0) * (self.width - self.left - self.right)

    def sy(self, y: float, lo: float, hi: float) -> float:
        return self.height - self.bottom - (y - lo) / (hi - lo or 1.0) * (self.height - self.top - self.bottom)


def num(v: float) -> str:
    """A chart label: whole numbers without a decimal point (counts), the rest as fmt_value."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return fmt_value(v)


def _finite(v: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _svg(kind: str, title: str, body: str, frame: Frame) -> Markup:
    return Markup(
        f'<svg class="chart" data-chart="{esc(kind)}" role="img" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(title)}</title>"
        f'<text x="{frame.left}" y="16" class="chart-title">{esc(title)}</text>{body}</svg>')


def _range(values: list[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if lo == hi:
        pad = abs(lo) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_chart(title: str, series: Sequence[Series], *, rules: Sequence[Rule] = (),
               y_range: tuple[float, float] | None = None, x_range: tuple[float, float] | None = None,
               x_label: Callable[[float], str] = fmt_value, x_title: str = "", frame: Frame = Frame()) -> Markup:
    """Lines with dots over a shared x axis, threshold rules across and event rules down."""
    pts = [(x, y) for s in series for x, y in s.points if _finite(x) and _finite(y)]
    if not pts:
        return _svg("line", title, f'<text x="{frame.left}" y="{frame.height // 2}" class="chart-empty">'
                                   "no data yet</text>", frame)
    ys = [y for _, y in pts] + [r.value for r in rules if r.axis == "y" and _finite(r.value)]
    xs = [x for x, _ in pts] + [r.value for r in rules if r.axis == "x" and _finite(r.value)]
    ylo, yhi = _range(ys, y_range)
    xlo, xhi = x_range or (min(xs), max(xs))
    if xlo == xhi:
        xlo, xhi = xlo - 1, xhi + 1
    out: list[str] = []
    x0, x1 = frame.left, frame.width - frame.right
    y0, y1 = frame.height - frame.bottom, frame.top
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>'
               f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>')
    for v in (ylo, (ylo + yhi) / 2, yhi):
        y = frame.sy(v, ylo, yhi)
        out.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(fmt_value(round(v, 4)))}'
                   f"</text>")
    for v in (xlo, xhi):
        out.append(f'<text x="{frame.sx(v, xlo, xhi):.1f}" y="{y0 + 14}" text-anchor="middle" class="tick">'
                   f"{esc(x_label(v))}</text>")
    if x_title:
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{frame.height - 4}" text-anchor="middle" class="tick">'
                   f"{esc(x_title)}</text>")
    for r in rules:
        if not _finite(r.value):
            continue
        if r.axis == "y" and ylo <= r.value <= yhi:
            y = frame.sy(r.value, ylo, yhi)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{esc(r.color)}" '
                       f'class="rule" data-rule="{esc(r.label)}"/><text x="{x1}" y="{y - 3:.1f}" text-anchor="end" '
                       f'class="rule-label">{esc(r.label)}</text>')
        elif r.axis == "x" and xlo <= r.value <= xhi:
            x = frame.sx(r.value, xlo, xhi)
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="{esc(r.color)}" '
                       f'class="mark" data-mark="{esc(r.label)}"/><text x="{x + 3:.1f}" y="{y1 + 10}" '
                       f'class="rule-label">{esc(r.label)}</text>')
    for s in series:
        sp = [(frame.sx(x, xlo, xhi), frame.sy(y, ylo, yhi)) for x, y in s.points if _finite(x) and _finite(y)]
        if len(sp) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in sp)
            out.append(f'<polyline points="{d}" fill="none" stroke="{esc(s.color)}" stroke-width="2"/>')
        for (x, y), (vx, vy) in zip(sp, [p for p in s.points if _finite(p[0]) and _finite(p[1])]):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{esc(s.color)}"><title>{esc(s.label)} '
                       f"{esc(x_label(vx))}: {esc(fmt_value(vy))}</title></circle>")
    legend = [s.label for s in series]
    for i, label in enumerate(legend):
        out.append(f'<text x="{x1 - 160 * (len(legend) - i)}" y="16" class="legend" '
                   f'fill="{esc(series[i].color)}">■ {esc(label)}</text>')
    return _svg("line", title, "".join(out), frame)


def bar_chart(title: str, bars: Sequence[tuple[str, float, bool]], *, rule: Rule | None = None,
              value_range: tuple[float, float] | None = None, bar_height: int = 18, width: int = 640) -> Markup:
    """Horizontal bars (label, value, highlighted), e.g. trial scores or per-feature drift scores."""
    rows = [(lbl, v, hi) for lbl, v, hi in bars if _finite(v)]
    frame = Frame(width=width, height=max(60, 34 + bar_height * len(rows) + 14), left=150, right=56)
    if not rows:
        return _svg("bar", title, f'<text x="{frame.left}" y="40" class="chart-empty">no data yet</text>', frame)
    vals = [v for _, v, _ in rows] + ([rule.value] if rule and _finite(rule.value) else [])
    lo, hi = value_range or (min(0.0, min(vals)), max(vals) or 1.0)
    out = []
    for i, (lbl, v, highlighted) in enumerate(rows):
        y = frame.top + 4 + i * bar_height
        xa, xb = frame.sx(min(0.0, v) if lo <= 0 else lo, lo, hi), frame.sx(v, lo, hi)
        x, w = min(xa, xb), max(abs(xb - xa), 1.0)
        out.append(f'<text x="{frame.left - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" class="tick">'
                   f"{esc(lbl if len(lbl) <= 26 else lbl[:25] + '…')}</text>"
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_height - 4}" '
                   f'class="{"bar hi" if highlighted else "bar"}"><title>{esc(lbl)}: {esc(num(v))}</title></rect>'
                   f'<text x="{max(xa, xb) + 4:.1f}" y="{y + bar_height * 0.7:.1f}" class="tick">{esc(num(v))}'
                   f"</text>")
    if rule is not None and _finite(rule.value) and lo <= rule.value <= hi:
        x = frame.sx(rule.value, lo, hi)
        out.append(f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{frame.height - 10}" '
                   f'stroke="{esc(rule.color)}" '
                   f'class="rule" data-rule="{esc(rule.label)}"/><text x="{x + 3:.1f}" y="{frame.height - 2}" '
                   f'class="rule-label">{esc(rule.label)}</text>')
    return _svg("bar", title, "".join(out), frame)


@dataclass(frozen=True)
class Event:
    """Something that happened at a time (epoch seconds): a retraining, a promotion, a rollout."""

    time: float
    label: str
    kind: str  # retrain, promotion, rollout, evaluation: the mark's colour


EVENT_COLORS = {"retrain": "#d62728", "promotion": "#2ca02c", "rollout": "#1f77b4", "evaluation": "#888"}


def timeline(title: str, events: Sequence[Event], *, time_label: Callable[[float], str],
             frame: Frame = Frame(height=150, left=16, right=120)) -> Markup:
    """Events on one time axis, each a labelled mark; labels alternate in height so close ones stay legible."""
    evs = sorted((e for e in events if _finite(e.time)), key=lambda e: e.time)
    if not evs:
        return _svg("timeline", title, f'<text x="{frame.left}" y="{frame.height // 2}" class="chart-empty">'
                                       "nothing recorded yet</text>", frame)
    lo, hi = evs[0].time, evs[-1].time
    if lo == hi:
        lo, hi = lo - 60, hi + 60
    y0 = frame.height - frame.bottom
    out = [f'<line x1="{frame.left}" y1="{y0}" x2="{frame.width - frame.right}" y2="{y0}" class="axis"/>']
    for v, anchor in ((lo, "start"), (hi, "end")):
        out.append(f'<text x="{frame.sx(v, lo, hi):.1f}" y="{y0 + 14}" text-anchor="{anchor}" class="tick">'
                   f"{esc(time_label(v))}</text>")
    for i, e in enumerate(evs):
        x = frame.sx(e.time, lo, hi)
        ly = frame.top + 12 + (i % 4) * 16
        color = EVENT_COLORS.get(e.kind, "#555")
        out.append(f'<line x1="{x:.1f}" y1="{ly + 2}" x2="{x:.1f}" y2="{y0}" stroke="{color}" class="mark" '
                   f'data-mark="{esc(e.kind)}"/><circle cx="{x:.1f}" cy="{y0}" r="4" fill="{color}"><title>'
                   f'{esc(time_label(e.time))} {esc(e.label)}</title></circle>'
                   f'<text x="{x + 3:.1f}" y="{ly}" class="rule-label" fill="{color}">{esc(e.label[:40])}</text>')
    return _svg("timeline", title, "".join(out), frame)


def spans(title: str, lanes: Sequence[tuple[str, Sequence[tuple[float, float, str]]]], *,
          time_label: Callable[[float], str], lane_height: int = 22, width: int = 640) -> Markup:
    """Intervals on lanes over one time axis, e.g. which version held `production` from when to when."""
    frame = Frame(width=width, height=34 + lane_height * len(lanes) + 20, left=130, right=16)
    times = [t for _, segs in lanes for a, b, _ in segs for t in (a, b) if _finite(t)]
    if not times:
        return _svg("spans", title, f'<text x="{frame.left}" y="40" class="chart-empty">nothing yet</text>', frame)
    lo, hi = min(times), max(times)
    if lo == hi:
        lo, hi = lo - 60, hi + 60
    y0 = frame.height - frame.bottom + 14
    out = [f'<line x1="{frame.left}" y1="{y0}" x2="{frame.width - frame.right}" y2="{y0}" class="axis"/>']
    for v, anchor in ((lo, "start"), (hi, "end")):
        out.append(f'<text x="{frame.sx(v, lo, hi):.1f}" y="{y0 + 12}" text-anchor="{anchor}" class="tick">'
                   f"{esc(time_label(v))}</text>")
    for i, (label, segs) in enumerate(lanes):
        y = frame.top + 4 + i * lane_height
        out.append(f'<text x="{frame.left - 6}" y="{y + lane_height * 0.65:.1f}" text-anchor="end" class="tick">'
                   f"{esc(label if len(label) <= 22 else label[:21] + '…')}</text>")
        for a, b, what in segs:
            if not (_finite(a) and _finite(b)):
                continue
            xa, xb = frame.sx(a, lo, hi), frame.sx(b, lo, hi)
            color = COLORS[2] if what == "production" else COLORS[0]
            out.append(f'<rect x="{xa:.1f}" y="{y}" width="{max(xb - xa, 2):.1f}" height="{lane_height - 6}" '
                       f'fill="{color}" opacity="0.75" data-span="{esc(what)}"><title>{esc(label)} held '
                       f'{esc(what)} {esc(time_label(a))} to {esc(time_label(b))}</title></rect>'
                       f'<text x="{xa + 3:.1f}" y="{y + lane_height * 0.55:.1f}" class="rule-label" fill="#fff">'
                       f"{esc(what)}</text>")
    return _svg("spans", title, "".join(out), frame)
