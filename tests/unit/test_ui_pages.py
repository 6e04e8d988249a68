"""The web view's pages, rendered from plain dicts (no cluster): content, escaping of user input,
pending objects, permission errors, and the inline SVG charts."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import pytest

from mlops_operator.cli.ui import charts, pages
from mlops_operator.cli.ui.layout import Listing
from mlops_operator.cli.ui.markup import Markup, esc, table, tag

from ..ui_samples import XSS, by_kind


def listing(kind: str) -> Listing:
    return Listing(kind, by_kind(kind))


def all_pages() -> dict[str, str]:
    return {
        "runs": pages.runs_page("demo", listing("TrainingRun"), []),
        "versions": pages.versions_page("demo", listing("ModelVersion"), listing("TrainingRun"), listing("Dataset"),
                                        listing("InferenceService")),
        "monitoring": pages.monitoring_page("demo", listing("InferenceService"), listing("DriftMonitor"),
                                            listing("TrainingRun"), listing("ModelVersion")),
        "datasets": pages.datasets_page("demo", listing("Dataset")),
        "overview": pages.overview_page("demo", [listing(k) for k in ("Dataset", "TrainingRun", "ModelVersion")]),
    }


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    p.close()
    return p


@pytest.mark.parametrize("name", ["runs", "versions", "monitoring", "datasets", "overview"])
def test_user_input_renders_as_text_never_as_markup(name: str):
    html = all_pages()[name]
    doc = parse(html)
    names = {t for t, _ in doc.tags}
    assert "script" not in names and "img" not in names and "iframe" not in names
    assert not [(t, a) for t, attrs in doc.tags for a in attrs if a.lower().startswith("on")]
    if name != "overview":
        # the XSS strings are on each page (annotation, message, alias reason, validation example), as text
        assert XSS in "".join(doc.text), f"{name}: the hostile text should be shown, as text"


def test_escaping_covers_attributes_and_svg_labels():
    assert esc('"><x>') == "&quot;&gt;&lt;x&gt;"
    assert tag("a", "<b>", {"href": '/x?a="1"'}) == '<a href="/x?a=&quot;1&quot;">&lt;b&gt;</a>'
    assert esc(Markup("<b>ok</b>")) == "<b>ok</b>"  # built here: passes through
    svg = charts.bar_chart("t<i>", [("<script>", 1.0, True)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "t&lt;i&gt;" in svg
    assert "<td>&lt;x&gt;</td>" in table(["h"], [["<x>"]])


def test_runs_page_compares_params_and_metrics_side_by_side():
    html = all_pages()["runs"]
    doc = parse(html)
    text = " ".join(doc.text)
    for name in ("propensity-initial", "propensity-retrain-1", "propensity-pending"):
        assert name in text
    # the differing estimator is shaded; the better roc_auc (0.88, retrain-1) is marked best
    assert '<td class="differs">HistGradientBoostingClassifier</td>' in html
    assert '<td class="num best">0.88</td>' in html and '<td class="num best">0.82</td>' not in html
    # trials: a chart per run with one bar per scored trial, the best highlighted
    bars = [a for t, a in doc.tags if t == "rect" and "bar" in (a.get("class") or "")]
    assert len(bars) == 3 + 4 + 2  # trials of the two runs + the roc_auc-by-run chart
    assert sum("hi" in (a.get("class") or "").split() for a in bars) == 3


def test_runs_page_compares_only_the_selected_runs():
    html = pages.runs_page("demo", listing("TrainingRun"), ["propensity-initial"])
    assert "Side by side (1 run)" in html and "Trials of propensity-initial" in html
    assert "Trials of propensity-retrain-1" not in html
    # the picker still lists every run, with only the selected one checked
    doc = parse(html)
    boxes = {a["value"]: "checked" in a for t, a in doc.tags if t == "input" and a.get("type") == "checkbox"}
    assert boxes == {"propensity-initial": True, "propensity-pending": False, "propensity-retrain-1": False}


def test_objects_without_status_render_as_pending():
    runs = pages.runs_page("demo", listing("TrainingRun"), ["propensity-pending"])
    assert "propensity-pending: " in runs and '<span class="badge pending">pending</span>' in runs
    mon = all_pages()["monitoring"]
    shadow = mon[mon.index('data-service="shadow"'):]
    assert "pending: no status yet" in shadow and '<span class="badge pending">pending</span>' in shadow
    bare = {"apiVersion": "mlops.dev/v1alpha1", "metadata": {"name": "fresh"}, "spec": {"source": {"type": "file"}}}
    ds = pages.datasets_page("demo", Listing("Dataset", [bare]))
    assert "pending: no snapshot yet" in ds
    dm = {"metadata": {"name": "new-dm"}, "spec": {"inferenceService": "propensity"}}
    mon = pages.monitoring_page("demo", listing("InferenceService"), Listing("DriftMonitor", [dm]),
                                listing("TrainingRun"), listing("ModelVersion"))
    assert "pending: the operator has not evaluated a window yet" in mon
    mv = {"metadata": {"name": "m-v1"}, "spec": {"model": "m", "version": 1, "artifact": {"digest": "1" * 64}}}
    vs = pages.versions_page("demo", Listing("ModelVersion", [mv]), Listing("TrainingRun"), Listing("Dataset"),
                             Listing("InferenceService"))
    assert "m-v1" in vs and '<span class="badge pending">pending</span>' in vs


@pytest.mark.parametrize("render", [
    lambda li: pages.runs_page("secret", li, []),
    lambda li: pages.datasets_page("secret", li),
    lambda li: pages.versions_page("secret", li, Listing("TrainingRun"), Listing("Dataset"),
                                   Listing("InferenceService")),
    lambda li: pages.monitoring_page("secret", li, Listing("DriftMonitor", error="x", forbidden=True),
                                     Listing("TrainingRun"), Listing("ModelVersion")),
])
def test_a_refused_list_says_no_permission(render):
    refused = Listing("TrainingRun", error='trainingruns.mlops.dev is forbidden: User "bob" cannot list (HTTP 403)',
                      forbidden=True)
    html = render(refused)
    assert "No permission" in html and "namespace secret" in html
    assert 'class="notice error"' in html


def _chart(html: str, kind: str) -> str:
    part = html[html.index(f'data-chart="{kind}"'):]
    return part[:part.index("</svg>")]


def test_monitoring_page_plots_drift_and_accuracy_over_time_with_the_retraining_marks():
    """status.history on one time axis: both series, both thresholds, and the retraining,
    promotion and rollout since the oldest window as marks down the chart (the demo's plot)."""
    html = all_pages()["monitoring"]
    doc = parse(html)
    line = _chart(html, "line")
    assert line.count("<circle") == 14  # 7 windows x (accuracy, drift share)
    for series in ("accuracy", "drift share"):  # each dot's title names its series
        assert len(re.findall(f"<circle[^>]*><title>{series} ", line)) == 7, series
    rules = [a.get("data-rule") for t, a in parse(line).tags if t == "line" and a.get("data-rule")]
    assert sorted(rules) == ["accuracy threshold 0.76", "drift share threshold 0.3"]
    marks = [a.get("data-mark") for t, a in parse(line).tags if t == "line" and a.get("data-mark")]
    assert marks and any(m.startswith("retrain propensity-retrain-1") for m in marks), marks
    assert any(m.startswith("production → propensity-v2") for m in marks)
    assert any(m.startswith("rolled out propensity-v2") for m in marks)
    assert not any("propensity-v1" in m and "production" in m for m in marks)  # before the oldest window
    timeline = _chart(html, "timeline")
    kinds = [a.get("data-mark") for t, a in parse(timeline).tags if t == "line" and a.get("data-mark")]
    assert sorted(kinds) == ["evaluation", "promotion", "promotion", "retrain", "rollout"]
    assert "Not in status" not in html
    assert "discount_pct" in " ".join(doc.text)


def test_monitoring_page_without_history_plots_the_trend_and_says_what_status_lacks():
    """A DriftMonitor written by an operator before status.history: accuracy per window from
    accuracyTrend, the last drift share as a bar, and a note on what is not in status."""
    monitors = [dict(o, status={k: v for k, v in o["status"].items() if k != "history"})
                for o in by_kind("DriftMonitor")]
    html = pages.monitoring_page("demo", listing("InferenceService"), Listing("DriftMonitor", monitors),
                                 listing("TrainingRun"), listing("ModelVersion"))
    line = _chart(html, "line")
    assert line.count("<circle") == 7  # status.accuracyTrend has 7 windows
    assert 'data-rule="threshold 0.76"' in line
    assert 'data-chart="bar"' in html
    assert "Not in status" in html  # what status does not hold is said, not invented


def test_datasets_page_shows_versions_and_the_validation_report():
    html = all_pages()["datasets"]
    text = " ".join(parse(html).text)
    assert text.count("ccccccccccc") >= 1 and "invalid" in text and "training uses it" in text
    assert "3 values of age outside [18, 90]" in text and "45% missing" in text


def test_versions_page_shows_lineage_and_alias_history():
    html = all_pages()["versions"]
    text = " ".join(parse(html).text)
    assert "propensity-v1" in text and "propensity-v2" in text
    assert "served it before" in text and "serving it" in text
    spans = [a for t, a in parse(html).tags if t == "rect" and a.get("data-span")]
    assert [s["data-span"] for s in spans] == ["production", "production"]


def test_line_chart_leaves_out_non_finite_points_and_says_when_empty():
    svg = charts.line_chart("a", [charts.Series("s", [(0, 0.5), (1, math.nan), (2, math.inf), (3, 0.7)])])
    assert svg.count("<circle") == 2 and "nan" not in svg.lower().replace("chart", "")
    assert "no data yet" in charts.line_chart("a", [charts.Series("s", [])])
    assert "nothing recorded yet" in charts.timeline("t", [], time_label=str)
    assert "no data yet" in charts.bar_chart("b", [("x", math.nan, False)])


def test_bar_chart_scales_bars_to_their_values():
    svg = charts.bar_chart("b", [("a", 1.0, False), ("b", 2.0, True)], value_range=(0.0, 2.0))
    widths = [float(a["width"]) for t, a in parse(svg).tags if t == "rect"]
    assert widths[1] == pytest.approx(2 * widths[0], rel=0.01)
