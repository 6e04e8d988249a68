"""`mlops ui` in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium)
against a real API server: each page shows the retail demo's objects, hostile text stays text,
and a user without permission on a namespace is told so, and shown nothing of it or of any other.

The objects are created with kubectl and their status written through the status subresource
(tests/ui_samples.py), as the operator would leave them after the retail loop: realistic pages
without minutes of training. Screenshots go to tests/artifacts/ui/ (ignored by git; set
MLOPS_TEST_ARTIFACTS to put them elsewhere), one per page, kept after the run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from mlops_operator.cli.kubeapi import Kube
from mlops_operator.cli.ui import server

from ..conftest import REPO, Cluster, OperatorProcess
from ..ui_samples import XSS, objects

ARTIFACTS = Path(os.environ.get("MLOPS_TEST_ARTIFACTS") or REPO / "tests" / "artifacts") / "ui"
PLURAL = {"Dataset": "datasets", "TrainingRun": "trainingruns", "ModelVersion": "modelversions",
          "InferenceService": "inferenceservices", "DriftMonitor": "driftmonitors"}


@pytest.fixture(scope="module")
def crds(local_cluster: Cluster, operator: OperatorProcess) -> Iterator[Cluster]:
    """The CRDs, and no operator while these tests run: the objects' status is written here as
    the operator would leave it, and a running operator (started by earlier tests of the
    session) would rewrite it (an object meant to show "pending" got the operator's status)."""
    operator.stop()
    try:
        yield _crds(local_cluster)
    finally:
        operator.start()


def _crds(local_cluster: Cluster) -> Cluster:
    local_cluster.kubectl("apply", "-k", str(REPO / "crds"))
    for crd in (REPO / "crds").glob("*.mlops.dev.yaml"):
        local_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd.stem}", "--timeout=60s")
    return local_cluster


def create_demo(c: Cluster, ns: str) -> None:
    """The samples' specs applied, then each status written as the operator writes it."""
    items = objects()
    docs = [{k: v for k, v in o.items() if k != "status"} for o in items]
    c.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    for o in items:
        if o.get("status"):
            c.kubectl("patch", PLURAL[o["kind"]], o["metadata"]["name"], "-n", ns, "--subresource=status",
                      "--type=merge", "-p", json.dumps({"status": o["status"]}))


@contextmanager
def serve(kube: Kube) -> Iterator[str]:
    srv = server.make_server(kube, "127.0.0.1", 0, log=lambda m: None)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_bin, "Debian's chromium and chromium-driver are missing (.ci/run installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # the machine's network is closed: no background connections, no component updates, no sync
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1300,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def screenshot(drv, name: str) -> Path:
    """The whole page (the window grown to the document's height), as a PNG artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = drv.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = drv.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}})
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def page_text(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.TAG_NAME, "body").text


def test_the_pages_show_the_demo_objects_in_a_real_browser(crds: Cluster, namespace: str, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    create_demo(crds, namespace)
    kube = Kube.connect(str(crds.kubeconfig), namespace=namespace)
    expect = {
        "runs": ["propensity-initial", "propensity-retrain-1", "propensity-pending", "Side by side",
                 "HistGradientBoostingClassifier", "learning_rate", "Trials of propensity-retrain-1"],
        "versions": ["Model propensity", "propensity-v1", "propensity-v2", "Lineage", "Alias history",
                     "served it before", "TrainingRun/propensity-retrain-1"],
        "monitoring": ["InferenceService propensity", "DriftMonitor propensity", "retraining runs",
                       "discount_pct", "InferenceService shadow", "pending: no status yet"],
        "datasets": ["Dataset retail", "training uses it", "3 values of age outside [18, 90]", "invalid"],
    }
    shots = []
    with serve(kube) as url:
        for name, wanted in expect.items():
            browser.get(f"{url}/{name}")  # no ?ns=: the kubeconfig's namespace (Kube.connect's)
            text = page_text(browser)
            assert f"in namespace {namespace}" in text
            for w in wanted:
                assert w.lower() in text.lower(), f"{name}: {w!r} not on the page"
            # hostile names and messages are shown as text, and no element came of them
            assert XSS in text, name
            assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img, main iframe")
            assert browser.find_elements(By.CSS_SELECTOR, "svg.chart"), f"{name}: no chart"
            shots.append(screenshot(browser, name))
        # the run picker: compare two chosen runs (a plain GET form, no script)
        browser.get(f"{url}/runs?ns={namespace}")
        for box in browser.find_elements(By.CSS_SELECTOR, "input[type=checkbox]"):
            if box.get_attribute("value") in ("propensity-pending",) and box.is_selected():
                box.click()
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        WebDriverWait(browser, 30).until(lambda d: "run=" in d.current_url and d.execute_script(
            "return document.readyState") == "complete")
        assert "Side by side (2 runs)" in page_text(browser)
        assert "run=propensity-initial" in browser.current_url and "propensity-pending" not in browser.current_url
    assert all(p.stat().st_size > 10_000 for p in shots)


def token_kubeconfig(c: Cluster, ns: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ns/account (a bound token), not as the admin."""
    token = c.kubectl("create", "token", account, "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(c.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cluster["server"],
                                               "certificate-authority-data": cluster["certificate-authority-data"]}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {"cluster": "c", "user": account, "namespace": ns}}],
        "current-context": "viewer"}))
    assert base64.b64decode(cluster["certificate-authority-data"])
    return path


def test_no_permission_on_a_namespace_is_said_and_nothing_of_it_is_shown(crds: Cluster, namespace: str, browser,
                                                                          tmp_path):
    c = crds
    create_demo(c, namespace)  # the admin's objects, which the viewer may not read
    # the viewer's own namespace, where a Role lets it read TrainingRuns only
    mine = f"{namespace[:50]}-mine"
    c.kubectl("create", "namespace", mine)
    try:
        c.kubectl("create", "serviceaccount", "viewer", "-n", mine)
        c.kubectl("create", "role", "runs-reader", "-n", mine, "--verb=get,list", "--resource=trainingruns.mlops.dev")
        c.kubectl("create", "rolebinding", "runs-reader", "-n", mine, "--role=runs-reader",
                  f"--serviceaccount={mine}:viewer")
        c.apply(yaml.safe_dump({"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingRun",
                                "metadata": {"name": "viewers-own-run"},
                                "spec": {"modelName": "mine", "dataset": {"name": "d"},
                                         "estimator": {"type": "LogisticRegression"}}}), mine)
        kube = Kube.connect(str(token_kubeconfig(c, mine, "viewer", tmp_path / "viewer.kubeconfig")))
        assert kube.namespace == mine
        with serve(kube) as url:
            browser.get(f"{url}/runs")
            text = page_text(browser)
            assert "viewers-own-run" in text and "pending" in text  # a run without status renders as pending
            for name in ("runs", "versions", "monitoring", "datasets"):
                browser.get(f"{url}/{name}?ns={namespace}")
                text = page_text(browser)
                assert "no permission" in text.lower(), name
                assert f"namespace {namespace}" in text
                assert "propensity" not in text and "viewers-own-run" not in text, name
                if name == "runs":
                    screenshot(browser, "no-permission")
            # the page comes with 403, the status RBAC gave
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"{url}/runs?ns={namespace}", timeout=30)
            assert e.value.code == 403
            # the permitted kind still shows in its namespace; the refused ones say so there too
            browser.get(f"{url}/versions?ns={mine}")
            assert "no permission" in page_text(browser).lower()
    finally:
        c.kubectl("delete", "namespace", mine, "--wait=false", check=False)


def test_objects_the_operator_has_not_seen_render_as_pending_in_a_real_browser(crds: Cluster, namespace: str,
                                                                               browser):
    """One object of every kind, just applied, with no status at all (no operator runs here): each
    page loads and says pending for each of them, instead of failing on the missing fields."""
    av = "mlops.dev/v1alpha1"
    bare = [
        {"apiVersion": av, "kind": "Dataset", "metadata": {"name": "fresh-data"},
         "spec": {"source": {"type": "generator", "generator": {"kind": "retail", "rows": 500, "seed": 1}},
                  "labelColumn": "purchased"}},
        {"apiVersion": av, "kind": "TrainingRun", "metadata": {"name": "fresh-run"},
         "spec": {"modelName": "fresh", "dataset": {"name": "fresh-data"},
                  "estimator": {"type": "LogisticRegression"}}},
        {"apiVersion": av, "kind": "ModelVersion", "metadata": {"name": "fresh-v1", "labels": {"mlops.dev/model": "fresh"}},
         "spec": {"model": "fresh", "version": 1,
                  "artifact": {"uri": "file:///store/models/fresh/" + "a" * 64 + "/", "digest": "a" * 64}}},
        {"apiVersion": av, "kind": "InferenceService", "metadata": {"name": "fresh"},
         "spec": {"model": "fresh", "version": 1}},
        {"apiVersion": av, "kind": "DriftMonitor", "metadata": {"name": "fresh"},
         "spec": {"inferenceService": "fresh"}},
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(bare))
    for o in bare:  # the API server stored them without status
        assert "status" not in crds.get_json(PLURAL[o["kind"]], o["metadata"]["name"], "-n", namespace)
    kube = Kube.connect(str(crds.kubeconfig), namespace=namespace)
    expect = {"runs": ["fresh-run"], "versions": ["fresh-v1"], "datasets": ["fresh-data", "pending: no snapshot yet"],
              "monitoring": ["InferenceService fresh", "pending: no status yet", "DriftMonitor fresh",
                             "pending: the operator has not evaluated a window yet"]}
    with serve(kube) as url:
        for name, wanted in expect.items():
            with urllib.request.urlopen(f"{url}/{name}?ns={namespace}", timeout=30) as r:
                assert r.status == 200, name
            browser.get(f"{url}/{name}?ns={namespace}")
            text = page_text(browser)
            assert f"in namespace {namespace}" in text, name
            for w in wanted:
                assert w in text, f"{name}: {w!r} not on the page:\n{text[:2000]}"
            # the object's own badge says pending
            from selenium.webdriver.common.by import By

            assert browser.find_elements(By.CSS_SELECTOR, "main .badge.pending"), f"{name}: no pending badge"
            assert "Traceback" not in text and "error" not in text.lower(), f"{name}:\n{text[:2000]}"
            screenshot(browser, f"pending-{name}")
